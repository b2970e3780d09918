"""Which cameras a daemon keeps a place for: one policy for the ventilator (classifier.dispatch)
and the sink, so invented names cannot lock a real camera out.

- A camera named in the daemon's ``--config`` (followed on reload), or pinned otherwise (the
  sink's ``--exit-when-drained``), always has a place and is never forgotten.
- Any other name takes a place from a bounded pool (``--max-cameras``) on its first message and
  keeps it while it is heard from; one silent for ``idle_s`` (``--camera-idle``) is forgotten,
  and the daemon drops everything it held for it (:meth:`Admission.expire`). A camera already
  in the pool is never pushed out by a newcomer, so a flood of names cannot evict a camera that
  runs; without a config, a new camera waits for the flood's names to go idle.
- A message for a new name while the pool is full is dropped and counted under
  ``cameras_refused/<reason>/<peer>``: the peer is the sender's CURVE key where ZAP set one
  (``key:<z85>``), else its address (ZeroMQ's ``Peer-Address``); at most MAX_PEERS of them are
  named, the rest are ``other``, so the counter stays small whatever a peer does.

Pure bookkeeping and no clock of its own: callers pass ``now`` (monotonic seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterable

import zmq

from camwire.common.counters import OTHER, Counters

DEFAULT_POOL = 256  # unconfigured cameras at once: a site with more names them in the config
DEFAULT_IDLE_S = 60.0  # an extractor reports every few seconds (STATUS_EVERY_S): a live camera is never this quiet
MAX_PEERS = 64  # distinct peer labels on the refusal counter; past them, OTHER
COUNTER = "cameras_refused"
LABELS = {COUNTER: ("reason", "peer")}  # for a daemon's Counters declaration


def peer_of(frame: Any) -> str:
    """Who sent a received zmq.Frame (``copy=False``): ``key:<z85>`` for a CURVE client ZAP let
    in, else the peer's address; ``?`` where ZeroMQ knows neither (inproc, or not a Frame)."""
    for prop, prefix in (("User-Id", "key:"), ("Peer-Address", "")):
        try:
            value = frame.get(prop)
        except zmq.ZMQError:  # no such property on this message (no ZAP, inproc)
            continue
        except AttributeError:  # not a zmq.Frame (a test's bytes)
            return "?"
        if value:
            return f"{prefix}{value}"[:128]
    return "?"


class Admission:
    """The configured names and the pool; ``admit`` on every message about a camera."""

    def __init__(self, counters: Counters | None = None, configured: Iterable[str] = (), pool: int = DEFAULT_POOL,
                 idle_s: float = DEFAULT_IDLE_S) -> None:
        if pool < 0 or idle_s <= 0:
            raise ValueError("pool: 0 or more; idle_s: more than 0")
        self.counters = counters if counters is not None else Counters()
        self.configured: frozenset[str] = frozenset(configured)
        self.pool, self.idle_s = pool, idle_s
        self._heard: OrderedDict[str, float] = OrderedDict()  # pool camera -> last heard; oldest first
        self._peers: set[str] = set()

    def __contains__(self, camera: str) -> bool:
        return camera in self.configured or camera in self._heard

    def __len__(self) -> int:
        return len(self.configured) + len(self._heard)

    def in_pool(self) -> int:
        return len(self._heard)

    def names(self) -> set[str]:
        """Every camera with a place now: the configured ones and the pool's."""
        return set(self.configured) | set(self._heard)

    def admit(self, camera: str, now: float, peer: Any = None) -> bool:
        """True when ``camera`` has a place (it is heard from now); False, counted, when it is new
        and the pool is full. ``peer``: the received zmq.Frame (or a label), read only on a refusal."""
        if camera in self.configured:
            return True
        if camera in self._heard:
            self._heard[camera] = now
            self._heard.move_to_end(camera)
            return True
        if len(self._heard) >= self.pool:
            self.refuse("pool_full", peer)
            return False
        self._heard[camera] = now
        return True

    def refuse(self, reason: str, peer: Any = None) -> None:
        """Count a message dropped for its camera, by reason and sender (bounded, see above)."""
        label = peer if isinstance(peer, str) else peer_of(peer) if peer is not None else "?"
        if label not in self._peers:
            if len(self._peers) >= MAX_PEERS:
                label = OTHER
            else:
                self._peers.add(label)
        self.counters.add(COUNTER, reason, label)

    def touch(self, camera: str, now: float) -> None:
        """Keep a pool camera's place as if heard now (it still has work waiting or in flight)."""
        if camera in self._heard:
            self._heard[camera] = now
            self._heard.move_to_end(camera)

    def expire(self, now: float, busy: Callable[[str], bool] | None = None) -> list[str]:
        """The pool cameras silent for ``idle_s``, forgotten now: the caller drops their state.
        One for which ``busy`` says True (work of it still waits) keeps its place, as if heard now.
        Costs nothing while no camera is due: the oldest is looked at first."""
        out = []
        while self._heard:
            camera, heard = next(iter(self._heard.items()))
            if now - heard < self.idle_s:
                break
            if busy is not None and busy(camera):
                self.touch(camera, now)
                continue
            del self._heard[camera]
            out.append(camera)
        return out

    def set_configured(self, names: Iterable[str], now: float) -> list[str]:
        """The config's cameras again (a reload). A newly named camera leaves the pool; one taken
        out of the config joins it as heard now, or, where the pool has no room, is forgotten at
        once and returned so the caller drops its state."""
        names = frozenset(names)
        dropped = self.configured - names
        for camera in names:
            self._heard.pop(camera, None)
        self.configured = names
        out = []
        for camera in sorted(dropped):
            if len(self._heard) < self.pool:
                self._heard[camera] = now
            else:
                out.append(camera)
        return out
