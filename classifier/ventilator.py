"""``camwire ventilator``: takes frames from extractors, hands them to workers that ask for work.

Sockets (both bound, both owned by the main thread, run by common.daemon):
  - frontend PULL: ``frame`` (checked with wire.peek_frame: the ventilator never decodes pixels,
    and never imports OpenCV), ``status`` and ``eos`` from extractors;
  - backend ROUTER: workers (DEALER) send ``ready`` (credits and frames done) and ``heartbeat``;
    the ventilator sends them frames, ``heartbeat``, ``reset`` (to a worker it does not know,
    after a restart of either side) and ``bye`` (when a leaving worker will get nothing more).
    ``status`` and ``eos`` ride to the sink through any worker, and so does a ``workers`` message
    every WORKERS_EVERY_S (each worker's detector, credits, frames in flight, done and lost; the
    backlog per camera; each camera's detector that no worker serves; each camera's frames by
    final bucket, common.frame_account; named by the ventilator's host and backend address, so a
    sink merges several ventilators' reports), which the sink keeps for ``camwire status``. A worker's
    heartbeat carrying ``sent`` is echoed at once (``echo``): its round trip sizes its credit
    window (classifier.worker_loop).
Shared memory (common.shm): a frame whose pixels wait in its extractor's ring comes as a header
alone. It goes on as it came to a worker that maps the same memory (its ``ready`` says its host),
and inline, copied out of the slot, to any other (``shm/inlined``), and inline from the start for
a camera with two detectors (two readers of one slot); a frame dropped here (superseded,
unserved, its camera forgotten or refused) has its slot given back at once.
Routing: a camera's ``detector`` in the file (one name or a list), or ``--route CAMERA=DETECTOR``
(repeatable; a camera given here takes only these), sends its frames only to workers serving
that detector; the file's cameras are followed on reload. A camera whose detector no worker
serves is counted ``unserved/<camera>/<detector>``, logged once a minute and reported.
Cameras: the file's (and those given to ``--route``) always have a place; any other name takes
one from a pool of ``--max-cameras`` and is forgotten after ``--camera-idle`` without a message
(common.admission), so invented names cannot lock a real camera out. A message for a new name
while the pool is full is counted under ``cameras_refused/pool_full/<peer>`` and dropped.
The decisions live in classifier.dispatch; this module is sockets and time.
"""

from __future__ import annotations

import errno
import socket
import time
from collections import deque
from typing import Any, Sequence

import msgspec

import zmq

from camwire.classifier.detector_name import served_name
from camwire.classifier.dispatch import Dispatcher, Pending
from camwire.common import shm, wire
from camwire.common.admission import LABELS as ADMISSION_LABELS
from camwire.common.config import Config
from camwire.common.daemon import Daemon
from camwire.common.frame_account import BUCKETS, OPEN
from camwire.common.settings import VentilatorSettings

HEARTBEAT_S = 1.0
TICK_S = 0.25  # deadlines, silent workers and heartbeats are checked this often
OUTBOX_MAX = 10_000  # status messages held while no worker is there to carry them
WORKERS_EVERY_S = 2.0
LABELS = {"received": ("camera",), "dispatched": ("camera",), "completed": ("camera",),
          "dropped": ("camera", "reason"), "workers": ("worker", "what"), "workers_forgotten": ("reason",),
          "refused": ("reason",), "late": ("reason",), "outbox_dropped": (), "unserved": ("camera", "detector"),
          "shm": ("what",), **ADMISSION_LABELS}


def routes_of(cfg: Config | None, flags: list[tuple[str, str]] | None) -> dict[str, list[str]]:
    """Camera -> the detectors it wants: the file's ``detector`` keys, each camera named by
    ``--route`` taking those given there instead. Each is named as a worker serves it
    (classifier.detector_name: an onnx model by its file name), so ``onnx:/models/x.onnx``
    written with a path still finds the workers that serve ``onnx:x.onnx``."""
    routes = {name: [served_name(d) for d in cam.detector] for name, cam in (cfg.cameras.items() if cfg else ())
              if cam.detector}
    given: dict[str, list[str]] = {}
    for camera, detector in flags or ():
        given.setdefault(camera, []).append(served_name(detector))
    return {**routes, **given}


def configured_of(cfg: Config | None, flags: list[tuple[str, str]] | None) -> set[str]:
    """The cameras that always have a place: the file's, and those ``--route`` names."""
    return {*(cfg.cameras if cfg else ()), *(camera for camera, _ in flags or ())}


def weights_of(cfg: Config | None) -> dict[str, float]:
    """Camera -> its share under overload, for the file's cameras whose ``weight`` is not 1 (the
    dispatcher's turns; every other camera counts 1)."""
    return {name: cam.weight for name, cam in (cfg.cameras.items() if cfg else ()) if cam.weight != 1}


def check(args: VentilatorSettings) -> None:
    """What the ventilator would refuse, judged before it starts (camwire.cli, check-config, a
    reload): an address without a transport, a limit below 1. ValueError naming the flag."""
    from camwire.common.sockets import check_addresses

    check_addresses(args, "frontend", "backend")
    for dest in ("max_backlog", "max_cameras"):
        value = getattr(args, dest, None)
        if value is not None and value < 1:
            raise ValueError(f"--{dest.replace('_', '-')} must be at least 1, not {value}")


class Ventilator:
    """The ventilator's state: its two sockets and one Dispatcher (the decisions); its
    methods are the frontend's and backend's handlers, the periodic checks and the reload."""

    def __init__(self, daemon: Daemon, args: VentilatorSettings) -> None:
        self.daemon, self.route_flags = daemon, args.route
        self.log, self.counters = daemon.log, daemon.counters
        self.heartbeat_timeout, self.max_frame_bytes = args.heartbeat_timeout, args.max_frame_bytes
        self.dispatcher = Dispatcher(max_backlog=args.max_backlog, counters=daemon.counters,
                                     frame_deadline=args.frame_deadline, max_cameras=args.max_cameras,
                                     routes=routes_of(daemon.config, args.route),
                                     configured=configured_of(daemon.config, args.route),
                                     camera_idle_s=args.camera_idle, weights=weights_of(daemon.config),
                                     on_drop=self._dropped)
        self.frontend = daemon.socket(zmq.PULL, bind=args.frontend, rcvhwm=8, linger=0)
        self.backend = daemon.socket(zmq.ROUTER, bind=args.backend, linger=1000)
        # the sink's workers table merges several ventilators' reports, each told apart by this
        self.name = f"{socket.gethostname()} {self.backend.getsockopt_string(zmq.LAST_ENDPOINT)}"[:128]
        self.outbox: deque[bytes] = deque()
        self.hosts: dict[bytes, str | None] = {}  # worker -> its shared-memory host (wire.Ready.host)
        self._rings: shm.Readers | None = None
        self._next_heartbeat = 0.0
        self._next_workers = 0.0
        self._unserved_logged: dict[tuple[str, str], int] = {}

    # -- input ---------------------------------------------------------------------------------

    def on_frontend(self, parts: list[zmq.Frame]) -> None:
        """A frame, ``status`` or ``eos`` from an extractor."""
        try:
            if len(parts) == 2:
                header = wire.peek_frame([p.buffer for p in parts], self.max_frame_bytes)
                peer, body = parts[0], parts
                if header.shm is not None and len(self.dispatcher.routes.get(header.camera, ())) > 1:
                    # two detectors would read one slot and each give it back: the pixels go inline
                    if (inline := self._inline(header)) is not None:
                        header, body = msgspec.structs.replace(header, shm=None), inline
                if not self.dispatcher.offer(header, body, peer=peer) and header.shm is not None:
                    self.rings().release(header.shm)  # refused (no place for its camera): nobody will read it
                return
            msg = wire.unpack(parts[0].buffer)
            if isinstance(msg, wire.FrameHeader):
                raise wire.MalformedMessage("bad_part_count", f"a frame in {len(parts)} parts")
            wire.expect(msg, wire.Status, wire.Eos, wire.Motion)
            if len(parts) != 1:
                raise wire.MalformedMessage("bad_part_count", f"{type(msg).__name__} in {len(parts)} parts")
            if isinstance(msg, (wire.Status, wire.Motion)):  # to the sink, through any worker
                if self.dispatcher.admit(msg.camera, peer=parts[0]):
                    self._to_sink(wire.pack(msg))
            elif isinstance(msg, wire.Eos):
                self.dispatcher.end_of_stream(msg, peer=parts[0])
        finally:
            self._dispatch()

    def on_backend(self, parts: list[zmq.Frame]) -> None:
        """``ready`` or ``heartbeat`` from a worker: ``[identity, message]``."""
        ident = parts[0].bytes
        try:
            if len(parts) != 2:
                raise wire.MalformedMessage("bad_part_count", f"{len(parts) - 1} parts from a worker")
            msg = wire.unpack(parts[1].buffer)
            wire.expect(msg, wire.Ready, wire.Heartbeat)
            now = time.monotonic()
            if isinstance(msg, wire.Ready):
                self._ready(ident, msg, now)
            elif ident in self.dispatcher.workers:
                self.dispatcher.worker_seen(ident, msg.worker or ident.hex(), now)
                if msg.sent is not None:  # straight back: the worker sizes its credit window by the round trip
                    self._send(ident, wire.pack(wire.Heartbeat(echo=msg.sent)))
            else:  # unknown (we restarted, or it was forgotten): ask for its credits
                self._send(ident, wire.pack(wire.Reset()))
        finally:
            self._dispatch()

    def _ready(self, ident: bytes, msg: wire.Ready, now: float) -> None:
        known = ident in self.dispatcher.workers
        worker = self.dispatcher.ready(ident, msg.worker, msg.credits, msg.done, now, detector=msg.detector or "")
        if worker is None:
            return  # the pool is full: refused and counted
        self.hosts[ident] = msg.host  # where it maps shared memory: frames from another host's rings go inline
        if not known:
            self.log.info("worker joined", worker=msg.worker, detector=msg.detector, credits=worker.credits)
            self._next_workers = 0.0  # the sink's table learns of it at the next tick
        if msg.leaving and not worker.leaving:
            self.dispatcher.leaving(ident)
            self._send(ident, wire.pack(wire.Bye()))
            self.log.info("worker leaving", worker=msg.worker, in_flight=len(worker.in_flight))

    # -- output --------------------------------------------------------------------------------

    def _to_sink(self, body: bytes) -> None:
        if len(self.outbox) >= OUTBOX_MAX:
            self.outbox.popleft()
            self.counters.add("outbox_dropped")
        self.outbox.append(body)

    def _dispatch(self) -> None:
        """Frames to workers with credits, then what waits for the sink; after every message and tick."""
        now = time.monotonic()
        while (item := self.dispatcher.next_dispatch(now)) is not None:
            ident, pending = item
            if not self._send(ident, *self._parts_for(ident, pending)):
                self.dispatcher.requeue(ident, pending)
                self._forget(ident, "unreachable")
        # a full backlog stops reading the frontend: TCP back-pressure then slows a file reader
        self.daemon.pause(self.frontend, not self.dispatcher.accepting())
        for eos in self.dispatcher.drained():
            self._to_sink(wire.pack(eos))
        while self.outbox:
            ident = self.dispatcher.any_worker()
            if ident is None:
                return
            if self._send(ident, self.outbox[0]):
                self.outbox.popleft()
            else:
                self._forget(ident, "unreachable")

    def _parts_for(self, ident: bytes, pending: Pending) -> Sequence[Any]:
        """A frame as its worker can take it: a shared-memory frame goes as it came to a worker
        that maps the same memory (common.shm.host_id), and inline to any other (the frame stays
        inline should its send fail and it wait again). A slot that cannot be read here goes as
        it came: the worker answers it with the error, so it is counted once."""
        ref = pending.header.shm
        if ref is None or self.hosts.get(ident) == ref.host:
            return pending.parts
        parts = self._inline(pending.header)
        if parts is None:
            return pending.parts
        pending.parts, pending.header = parts, msgspec.structs.replace(pending.header, shm=None)
        return parts

    def _inline(self, header: wire.FrameHeader) -> list | None:
        """The frame's parts with its pixels copied out of its slot, and the slot given back
        (counted ``shm/inlined``); None when the slot cannot be read here (counted by why)."""
        assert header.shm is not None
        try:
            view = self.rings().view(header.shm, header.raw_size)
            pixels = bytes(view)  # a copy: the slot is given back now, the send may outlive it
            del view
            if not self.rings().valid(header.shm):
                raise shm.ShmError("recycled", "the slot was reused while it was copied")
        except shm.ShmError as exc:
            self.counters.add("shm", exc.reason)
            return None
        self.rings().release(header.shm)
        self.counters.add("shm", "inlined")
        return wire.frame_parts(msgspec.structs.replace(header, shm=None), pixels)

    def rings(self) -> shm.Readers:
        """The extractors' rings, mapped when first needed (a pool of remote workers, or a frame dropped)."""
        if self._rings is None:
            self._rings = shm.Readers()
        return self._rings

    def _send(self, ident: bytes, *parts) -> bool:
        try:
            self.backend.send_multipart([ident, *parts], flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.ZMQError as exc:
            if exc.errno in (errno.EHOSTUNREACH, zmq.EAGAIN):
                return False
            raise

    def _forget(self, ident: bytes, reason: str) -> None:
        name = self.dispatcher.workers[ident].name if ident in self.dispatcher.workers else ident.hex()
        lost = self.dispatcher.forget(ident, reason)
        self.hosts.pop(ident, None)
        self.log.warning("worker forgotten", worker=name, reason=reason, frames_lost=len(lost))
        self._next_workers = 0.0

    def _dropped(self, pending: Pending, reason: str) -> None:
        """A frame the dispatcher let go without a worker (``superseded``, ``unserved``,
        ``forgotten``; once per Pending, so once per detector its camera wants): the frame's
        shared-memory slot back to its ring (common.shm)."""
        if pending.header.shm is not None:
            self.rings().release(pending.header.shm)

    def tick(self) -> None:
        """Deadlines, silent and finished workers, heartbeats and the pool's load for the sink."""
        now = time.monotonic()
        for worker, (camera, seq) in self.dispatcher.overdue(now):
            self.daemon.repeats(f"deadline:{worker.name}", "frame past its deadline counted lost", worker=worker.name,
                                camera=camera, seq=seq)
        for ident in self.dispatcher.expired(now, self.heartbeat_timeout):
            self._forget(ident, "heartbeat")
        if gone := self.dispatcher.forget_idle(now):  # one line, however many a flood of names leaves behind
            self.log.info("idle cameras forgotten", count=len(gone), cameras=gone[:10],
                          idle_s=self.dispatcher.admission.idle_s)
        for ident in self.dispatcher.finished_leavers():
            self.log.info("worker left", worker=self.dispatcher.workers[ident].name)
            self.dispatcher.forget(ident, "left")
            self._next_workers = 0.0
        unserved = self.dispatcher.unserved_now()
        self._log_unserved(unserved)
        if now >= self._next_workers and self.dispatcher.any_worker() is not None:
            self._next_workers = now + WORKERS_EVERY_S
            workers, backlog = self.dispatcher.load()
            report = [wire.Unserved(camera=c, detector=d, frames=n) for (c, d), n in sorted(unserved.items())]
            self._to_sink(wire.pack(wire.Workers(ts_ns=time.time_ns(), ventilator=self.name, workers=workers,
                                                 backlog=backlog, unserved=report[:4096],
                                                 accounts=self.dispatcher.account(),
                                                 refused=wire.refusals(self.counters.get_tree("handshakes_failed"),
                                                                      self.counters.get_tree("refused_peers")))))
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT_S
            beat = wire.pack(wire.Heartbeat())
            for ident in list(self.dispatcher.workers):
                if not self._send(ident, beat):
                    self._forget(ident, "unreachable")
        self._dispatch()

    def _log_unserved(self, unserved: dict[tuple[str, str], int]) -> None:
        """Once a minute for each camera's detector that no worker serves, while its frames come."""
        for (camera, detector), frames in unserved.items():
            if frames != self._unserved_logged.get((camera, detector)):
                self._unserved_logged[(camera, detector)] = frames
                self.daemon.repeats(f"unserved:{camera}:{detector}", "no worker serves this camera's detector; "
                                    "its frames are counted unserved", camera=camera, detector=detector, frames=frames)

    def reload(self, cfg: Config | None) -> None:
        """The cameras and their detectors again; the rest is read at start-up only."""
        cameras = configured_of(cfg, self.route_flags)
        if cameras != self.dispatcher.admission.configured:
            self.log.info("reload: cameras", cameras=sorted(cameras))
            self.dispatcher.set_configured(cameras)
        routes = routes_of(cfg, self.route_flags)
        if {c: tuple(d) for c, d in routes.items()} != self.dispatcher.routes:
            self.log.info("reload: cameras' detectors", routes=routes)
            self.dispatcher.set_routes(routes)
        weights = weights_of(cfg)
        if weights != self.dispatcher.weights:
            self.log.info("reload: cameras' weights", weights=weights)
            self.dispatcher.set_weights(weights)
        self.log.info("reload: done", workers=len(self.dispatcher.workers), backlog=self.dispatcher.backlog())

    def gauges(self) -> dict:
        workers, backlog = self.dispatcher.load()
        # a gauge, not a counter: a late answer moves a frame out of worker_lost or deadline
        frames = {(camera, bucket): getattr(account, bucket) for camera, account in self.dispatcher.account().items()
                  for bucket in (*BUCKETS, *OPEN)}
        return {"frames": ("frames received per camera, by final bucket or where they are now (common.frame_account)",
                           ("camera", "bucket"), frames),
                "backlog": ("frames waiting for a worker", ("camera",), {(c,): n for c, n in backlog.items()}),
                "worker_in_flight": ("frames a worker holds", ("worker",), {(w.name,): w.in_flight for w in workers}),
                "worker_credits": ("frames a worker can take now", ("worker",), {(w.name,): w.credits for w in workers}),
                "workers": ("workers known", (), {(): len(workers)}),
                "cameras_known": ("cameras with a place: the configured and the pool's", (),
                                  {(): len(self.dispatcher.admission)})}


def main(args: VentilatorSettings) -> int:
    d = Daemon("ventilator", args, LABELS)
    vent = Ventilator(d, args)
    d.on(vent.frontend, vent.on_frontend)
    d.on(vent.backend, vent.on_backend)
    d.every(TICK_S, vent.tick, now=True)
    d.on_reload(vent.reload)
    d.stats_extra(vent.dispatcher.stats_extra)
    d.gauges(vent.gauges)
    d.log.info("ventilator started", frontend=args.frontend, backend=args.backend, routes=vent.dispatcher.routes)
    code = d.run()
    d.log.info("ventilator stopped", stats=d.stats())
    return code
