"""The daemons on other hosts that the console (and ``camwire status``, ``camwire reload``) asks:
``[web] daemons`` (``--daemon ROLE=ADDR``), each a daemon's ``--serve`` address (common.serve).

A sink listed there gives the console its events, status, snapshots and review marks, and each
recorder listed its recordings, merged with what the console reads on its own host (a sink's or
a recorder's files here are read directly, the fast path, and that daemon is not asked again:
its hello names its files) into one view and one timeline per camera. Every daemon listed is
asked to reload when the console reloads, and says what came of it. A daemon that does not
answer is named with its address (:meth:`Remote.hosts`, the system page), never hidden behind
an empty list, and is not asked again for DOWN_SKIP_S (a page pays its timeout once).

Every call runs on a thread of the caller's (the HTTP side's executor, the events thread): a
:class:`common.serve.Client` is safe from any thread.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import zmq

from camwire.common.config import Config
from camwire.common.curve import Curve
from camwire.common.serve import Client, Refused, Unreachable
from camwire.common.settings.values import daemon_address
from camwire.common.sockets import OperatorError
from camwire.recorder.export import TOUCH_S
from camwire.web.recordings import ClipCache

STATUS_TIMEOUT_S = 3.0  # the console's pages ask every second or two: a host down must not hold them
CLIP_TIMEOUT_S = 120.0  # a long kept clip remuxed where it lives, then sent
RELOAD_TIMEOUT_S = 35.0  # a daemon's loop takes the reload at its next turn (common.daemon.ask_reload)
HELLO_EVERY_S = 5.0
SIGNATURES_KEPT = 10_000  # kept clips whose cached copy's signature is remembered
DOWN_SKIP_S = 5.0  # a daemon that did not answer is not asked again this long (hosts() asks it)
REVIEWED_PER_ASK = 1000  # object ids in one question (about 45 bytes each)


def daemons_in(cfg: Config) -> list[tuple[str, str]]:
    """``[web] daemons`` of a camwire.toml, as (role, address)."""
    return [tuple(d) if isinstance(d, (tuple, list)) else daemon_address(d)  # type: ignore[misc]
            for d in cfg.daemon_defaults("web").get("daemons") or []]


def curve_in(cfg: Config) -> Curve | None:
    """The CURVE keys a command on this host asks other hosts with: ``[security]`` key and servers."""
    security = cfg.daemon_defaults("web")
    return Curve.from_args(SimpleNamespace(curve_key=security.get("curve_key"), curve_clients=None,
                                           curve_servers=security.get("curve_servers")))


@dataclass
class Peer:
    role: str
    address: str
    client: Client
    error: str | None = None  # the last call's failure, None after one that answered
    hello: dict[str, Any] | None = None
    checked: float = 0.0
    failed_at: float = 0.0  # when a call last found it unreachable: not asked again for DOWN_SKIP_S
    here: bool = False  # a sink or recorder whose files the console reads on this host already (not asked twice)


@dataclass
class Remote:
    """The listed daemons, by role, and what the console last heard from each."""

    peers: list[Peer]
    local_recordings: Path | None = None  # the recorder folder the console reads itself, if any
    local_events: Path | None = None  # the sink's events file the console reads itself, if any
    _kept_at: dict[str, Peer] = field(default_factory=dict)  # event id -> the recorder that keeps its clip
    _kept_by: dict[str, list[str]] = field(default_factory=dict)  # a recorder's address -> its last list
    _cursors: dict[str, Any] = field(default_factory=dict)  # a sink's address -> its events cursor
    # (recorder, event) -> the signature of the kept clip cached here (recorder.served event_clip)
    _clip_signatures: dict[tuple[str, str], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, ctx: zmq.Context, daemons: list[tuple[str, str]], curve: Any = None,
           local_recordings: Path | None = None, local_events: Path | None = None) -> Remote:
        return cls([Peer(role, addr, Client(ctx, addr, role, curve)) for role, addr in daemons],
                   local_recordings.resolve() if local_recordings is not None else None,
                   local_events.resolve() if local_events is not None else None)

    def of_role(self, role: str) -> list[Peer]:
        return [p for p in self.peers if p.role == role]

    @property
    def sinks(self) -> list[Peer]:
        """The sinks asked over the network: not one whose events file the console reads on this
        host (its hello says so)."""
        return [p for p in self.of_role("sink") if not p.here]

    @property
    def recorders(self) -> list[Peer]:
        """The recorders asked over the network: not one whose folder is the console's own
        ``--recordings`` on this host (its hello says so), which would count every file twice."""
        return [p for p in self.of_role("recorder") if not p.here]

    def close(self) -> None:
        for p in self.peers:
            p.client.close()

    def _call(self, peer: Peer, op: str, timeout: float, probe: bool = False, **args: Any) -> tuple[Any, list[bytes]]:
        """``op`` asked of ``peer``. One found unreachable is not asked again for DOWN_SKIP_S (a
        page costs a host that is down its timeout once, not at every question), unless
        ``probe``: the hello of :meth:`hosts` and a reload always ask."""
        if not probe and peer.error is not None and time.monotonic() - peer.failed_at < DOWN_SKIP_S:
            raise Unreachable(peer.address, peer.error)
        try:
            out = peer.client.call(op, timeout, **args)
        except Unreachable as exc:
            peer.error, peer.failed_at = f"unreachable: {exc}", time.monotonic()
            raise
        except OperatorError as exc:  # no key to pin for it (--curve-servers): as good as unreachable
            peer.error, peer.failed_at = str(exc), time.monotonic()
            raise Unreachable(peer.address, str(exc)) from None
        peer.error = None
        return out

    def _each(self, peers: list[Peer], op: str, timeout: float, probe: bool = False,
              **args: Any) -> list[tuple[Peer, Any]]:
        """``op`` asked of every peer at once; (peer, body) of those that answered it."""
        if not peers:
            return []

        def one(p: Peer) -> tuple[Peer, Any] | None:
            try:
                return p, self._call(p, op, timeout, probe, **args)[0]
            except (Unreachable, Refused):
                return None

        with ThreadPoolExecutor(len(peers)) as pool:
            return [r for r in pool.map(one, peers) if r is not None]

    # -- the sink's -------------------------------------------------------------------------------

    def status(self) -> tuple[list[dict], list[dict], dict | None, list[dict]]:
        """status.db's rows from every sink listed, together (sink.served ``status``)."""
        cameras: list[dict] = []
        workers: dict[str, dict] = {}
        sink: dict | None = None
        refused: list[dict] = []
        for _peer, body in self._each(self.sinks, "status", STATUS_TIMEOUT_S):
            cameras += body["cameras"]
            workers.update({w["name"]: w for w in body["workers"]})
            sink = sink or body["sink"]
            refused += body["refused"]
        return cameras, list(workers.values()), sink, refused

    def follow_events(self, ingest: Any) -> int:
        """New lines of every sink's events file into ``ingest(lines)``; the lines taken."""
        taken = 0
        for peer in self.sinks:
            for _ in range(64):  # a big backlog comes a few MB at a time
                try:
                    body, _ = self._call(peer, "events", STATUS_TIMEOUT_S * 3, cursor=self._cursors.get(peer.address))
                except (Unreachable, Refused):
                    break
                lines = [line for line in body["lines"].split(b"\n") if line]
                if lines:
                    taken += ingest(lines)
                self._cursors[peer.address] = body["cursor"]
                if not body["next"]:
                    break
        return taken

    def snapshot(self, name: str) -> bytes:
        """A snapshot file from whichever sink has it; LookupError when none does."""
        for peer in self.sinks:
            try:
                return self._call(peer, "snapshot", STATUS_TIMEOUT_S * 3, name=name)[1][0]
            except (Unreachable, Refused):
                continue
        raise LookupError(f"no sink has {name!r}")

    def reviewed(self, ids: list[str], user: str | None) -> set[str]:
        """Those of ``ids`` the sinks' review marks hold (sink.served ``reviewed``), asked
        REVIEWED_PER_ASK at a time (a question is small: common.serve ASK_MAX_BYTES)."""
        out: set[str] = set()
        for i in range(0, len(ids), REVIEWED_PER_ASK):
            for _peer, body in self._each(self.sinks, "reviewed", STATUS_TIMEOUT_S, ids=ids[i:i + REVIEWED_PER_ASK],
                                          user=user):
                out.update(body)
        return out

    # -- the recorders' ---------------------------------------------------------------------------

    def ranges(self, camera: str | None, since: float | None, until: float | None) -> dict[str, list[list[float]]]:
        """Every recorder's ranges, joined per camera (two recorders of one camera: one timeline)."""
        out: dict[str, list[list[float]]] = {}
        for _peer, body in self._each(self.recorders, "ranges", STATUS_TIMEOUT_S, camera=camera, since=since,
                                      until=until):
            for name, spans in body.items():
                out.setdefault(name, []).extend(spans)
        return {name: joined(spans) for name, spans in out.items()}

    def kept(self) -> set[str]:
        """Every event id a recorder listed keeps a clip of; remembers which one keeps it. A
        recorder that does not answer keeps its last list (its clip links do not flicker)."""
        answered = {peer.address: ids for peer, ids in self._each(self.recorders, "kept", STATUS_TIMEOUT_S)}
        at: dict[str, Peer] = {}
        with self._lock:
            for peer in self.recorders:
                ids = answered.get(peer.address)
                self._kept_by[peer.address] = ids if ids is not None else self._kept_by.get(peer.address, [])
                at.update(dict.fromkeys(self._kept_by[peer.address], peer))
            self._kept_at = at
        return set(at)

    def event_clip(self, key: str, cache: ClipCache) -> Path:
        """The kept clip of ``key`` from the recorder that keeps it, cached here as MP4."""
        with self._lock:
            first = self._kept_at.get(key)
        order = [first] if first is not None else []
        order += [p for p in self.recorders if p is not first]
        for peer in order:
            with self._lock:
                have = self._clip_signatures.get((peer.address, key))
            if have is not None and not cache.path(_clip_key(peer, key, have)).is_file():
                have = None  # evicted here since: the whole clip again
            try:
                body, blobs = self._call(peer, "event_clip", CLIP_TIMEOUT_S, key=key, have=have)
            except (Unreachable, Refused):
                continue
            signature = body["signature"]
            self._remember((peer.address, key), signature)
            if not blobs and cache.path(_clip_key(peer, key, signature)).is_file():  # the copy here is current
                return cache.path(_clip_key(peer, key, signature))
            if not blobs:  # evicted while it was asked: the whole clip again
                body, blobs = self._call(peer, "event_clip", CLIP_TIMEOUT_S, key=key)
            return cache.get(_clip_key(peer, key, body["signature"]), lambda tmp: tmp.write_bytes(blobs[0]))
        raise LookupError(f"no recorder keeps a clip of {key!r}")

    def range_clip(self, camera: str, start: float, end: float, cache: ClipCache) -> Path:
        """``camera``'s [start, end) as MP4 from the recorder that has most of it, cached here by
        what it is made of there (recorder.export.range_signature: a range still growing, or cut
        short while a file was being written, is made again once it has changed)."""
        holding = []
        for peer, body in self._each(self.recorders, "ranges", STATUS_TIMEOUT_S, camera=camera, since=start,
                                     until=end):
            spans = body.get(camera) or []
            if spans:
                holding.append((sum(b - a for a, b in spans), peer))
        for _, peer in sorted(holding, key=lambda h: -h[0]):
            name = (peer.address, f"{camera}\0{start!r}\0{end!r}")
            with self._lock:
                have = self._clip_signatures.get(name)
            key = lambda signature: f"remote\0{peer.address}\0range\0{name[1]}\0{signature}"  # noqa: E731
            try:
                body, blobs = self._call(peer, "export", CLIP_TIMEOUT_S, camera=camera, start=start, end=end,
                                         have=have if have and cache.path(key(have)).is_file() else None)
                if not blobs and not cache.path(key(body["signature"])).is_file():  # evicted meanwhile
                    body, blobs = self._call(peer, "export", CLIP_TIMEOUT_S, camera=camera, start=start, end=end)
            except Unreachable:
                continue
            except Refused as exc:
                raise LookupError(str(exc)) from None  # too long for one answer, or nothing there after all
            self._remember(name, body["signature"])
            if not blobs:
                return cache.path(key(body["signature"]))
            return cache.get(key(body["signature"]), lambda tmp: tmp.write_bytes(blobs[0]))
        raise LookupError(f"nothing recorded for {camera!r} in that range")

    def _remember(self, name: tuple[str, str], signature: str) -> None:
        with self._lock:
            if len(self._clip_signatures) >= SIGNATURES_KEPT:  # a bound: forgetting costs one download
                self._clip_signatures.clear()
            self._clip_signatures[name] = signature

    def preview(self, camera: str, ts: float) -> bytes:
        for peer in self.recorders:
            try:
                return self._call(peer, "preview", STATUS_TIMEOUT_S, camera=camera, ts=ts)[1][0]
            except (Unreachable, Refused):
                continue
        raise LookupError(f"nothing recorded for {camera!r} at {ts}")

    def usage(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for _peer, body in self._each(self.recorders, "usage", STATUS_TIMEOUT_S):
            for k, v in body.items():
                total[k] = total.get(k, 0) + v
        return total

    # -- every daemon's ---------------------------------------------------------------------------

    def reload_all(self) -> list[dict[str, Any]]:
        """Every listed daemon asked to reload at once; each one's answer: ``outcome`` applied,
        refused (with ``file``, ``line``, ``reason``), unchanged, or unreachable."""
        def one(p: Peer) -> dict[str, Any]:
            base = {"daemon": p.role, "address": p.address}
            try:
                self._call(p, "hello", STATUS_TIMEOUT_S, probe=True)  # a host that is down: said in seconds
                return {**base, **self._call(p, "reload", RELOAD_TIMEOUT_S, probe=True)[0]}
            except Unreachable as exc:
                return {**base, "outcome": "unreachable", "reason": str(exc)}
            except Refused as exc:
                return {**base, "outcome": "refused", "reason": str(exc)}

        if not self.peers:
            return []
        with ThreadPoolExecutor(len(self.peers)) as pool:
            return list(pool.map(one, self.peers))

    def hosts(self, now: float | None = None) -> list[dict[str, Any]]:
        """Each listed daemon: reachable or not (asked again every HELLO_EVERY_S), and who it said it is."""
        now = time.time() if now is None else now
        due = [p for p in self.peers if now - p.checked >= HELLO_EVERY_S]
        for peer, body in self._each(due, "hello", STATUS_TIMEOUT_S, probe=True):
            peer.hello = body
            mine = {"recorder": ("dir", self.local_recordings), "sink": ("events", self.local_events)}.get(peer.role)
            peer.here = (mine is not None and mine[1] is not None and body.get("host") == socket.gethostname()
                         and body.get(mine[0]) == str(mine[1]))
        for p in due:
            p.checked = now
        return [{"daemon": p.role, "address": p.address, "reachable": p.error is None and p.hello is not None,
                 "error": p.error, "host": (p.hello or {}).get("host"), "pid": (p.hello or {}).get("pid"),
                 "read_here": p.here} for p in self.peers]


def _clip_key(peer: Peer, key: str, signature: str) -> str:
    return f"remote\0{peer.address}\0event\0{key}\0{signature}"


def joined(spans: list[list[float]]) -> list[list[float]]:
    """Ranges sorted, those that overlap or touch made one."""
    out: list[list[float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + TOUCH_S:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out
