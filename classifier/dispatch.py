"""The ventilator's decisions, with no sockets: which frame waits, which is dropped, who gets work.

- Workers ask for work with credits; a credit is one frame a worker can take now. Credits are
  used oldest first (the worker free longest gets the next frame), so load is shared by
  availability, not by turns: a busy worker simply gets nothing.
- A live camera keeps at most its newest frame while no worker is free: a newer frame replaces
  the waiting one (counted ``superseded``), so latency stays bounded under overload.
- A file read as fast as the pipeline takes it (``live`` false) is never superseded; its frames
  queue, and the daemon stops reading its frontend while the backlog is full, which is what
  makes the extractor wait.
- Every frame handed to a worker is remembered until the worker reports it done, so a worker
  that dies costs exactly its in-flight frames, counted per camera as ``worker_lost``.
- A camera's ``eos`` is passed on only when its last frame is done, with the number of results
  the sink should expect, so the sink knows when that camera has drained.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

from common.counters import Counters
from common.wire import Buffer, FrameHeader


@dataclass(slots=True)
class Pending:
    header: FrameHeader
    parts: Sequence[Buffer]


@dataclass(slots=True)
class WorkerState:
    ident: bytes
    name: str
    last_seen: float
    in_flight: dict[tuple[str, int], None] = field(default_factory=dict)
    credits: int = 0
    leaving: bool = False


class Dispatcher:
    """Queues, credits and accounting for one ventilator."""

    def __init__(self, max_backlog: int = 64) -> None:
        self.max_backlog = max_backlog
        self.counters = Counters()
        self.workers: dict[bytes, WorkerState] = {}
        self._queues: dict[str, deque[Pending]] = {}
        self._ready_cameras: deque[str] = deque()  # cameras with a waiting frame, in turn order
        self._tokens: deque[bytes] = deque()  # one entry per credit, oldest first
        self._eos: dict[str, dict[str, Any]] = {}
        self._completed: dict[str, int] = {}

    # -- frames in -----------------------------------------------------------------------------

    def offer(self, header: FrameHeader, parts: Sequence[Buffer]) -> None:
        camera = header.camera
        self.counters.add("received", camera)
        queue = self._queues.setdefault(camera, deque())
        if not queue:
            self._ready_cameras.append(camera)  # a camera is in the turn order once, while it waits
        elif header.live:
            self.counters.add("dropped", camera, "superseded", n=len(queue))
            queue.clear()
        queue.append(Pending(header, parts))

    def backlog(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def accepting(self) -> bool:
        return self.backlog() < self.max_backlog

    # -- workers -------------------------------------------------------------------------------

    def worker_seen(self, ident: bytes, name: str, now: float) -> tuple[WorkerState, bool]:
        """Returns the worker and whether it was new to us."""
        worker = self.workers.get(ident)
        if worker is None:
            worker = self.workers[ident] = WorkerState(ident, name, now)
            return worker, True
        worker.last_seen = now
        return worker, False

    def ready(self, ident: bytes, name: str, credits: int, done: Sequence[Sequence[Any]], now: float) -> None:
        worker, _ = self.worker_seen(ident, name, now)
        for item in done:
            key = (str(item[0]), int(item[1]))
            if key in worker.in_flight:
                del worker.in_flight[key]
                self.counters.add("completed", key[0])
                self.counters.add("workers", worker.name, "completed")
                self._completed[key[0]] = self._completed.get(key[0], 0) + 1
        if credits > 0 and not worker.leaving:
            worker.credits += credits
            self._tokens.extend([ident] * credits)

    def leaving(self, ident: bytes) -> None:
        """A worker shutting down: it gets no more work, but what it holds is still its own."""
        worker = self.workers.get(ident)
        if worker is not None:
            worker.leaving = True
            self._drop_tokens(ident)

    def forget(self, ident: bytes, reason: str) -> list[tuple[str, int]]:
        """Drop a worker (gone or silent); its in-flight frames are counted lost per camera."""
        worker = self.workers.pop(ident, None)
        if worker is None:
            return []
        self._drop_tokens(ident)
        lost = list(worker.in_flight)
        for camera, _seq in lost:
            self.counters.add("dropped", camera, "worker_lost")
        self.counters.add("workers_forgotten", reason)
        return lost

    def expired(self, now: float, timeout: float) -> list[bytes]:
        return [w.ident for w in self.workers.values() if now - w.last_seen > timeout]

    def finished_leavers(self) -> list[bytes]:
        return [w.ident for w in self.workers.values() if w.leaving and not w.in_flight]

    def _drop_tokens(self, ident: bytes) -> None:
        self._tokens = deque(t for t in self._tokens if t != ident)
        if ident in self.workers:
            self.workers[ident].credits = 0

    def requeue(self, ident: bytes, pending: Pending) -> None:
        """A send that failed: the frame goes back to the front of its camera's queue."""
        worker = self.workers.get(ident)
        if worker is not None:
            worker.in_flight.pop((pending.header.camera, pending.header.seq), None)
        self.counters.add("dispatched", pending.header.camera, n=-1)
        queue = self._queues.setdefault(pending.header.camera, deque())
        if not queue:
            self._ready_cameras.appendleft(pending.header.camera)
        queue.appendleft(pending)

    # -- frames out ----------------------------------------------------------------------------

    def next_dispatch(self) -> tuple[bytes, Pending] | None:
        """The next (worker, frame) to send, or None when nothing waits or nobody is free."""
        while self._tokens and self._ready_cameras:
            ident = self._tokens.popleft()
            worker = self.workers.get(ident)
            if worker is None or worker.leaving:
                continue
            camera = self._ready_cameras.popleft()
            queue = self._queues[camera]
            pending = queue.popleft()
            if queue:
                self._ready_cameras.append(camera)  # round-robin between cameras
            worker.credits -= 1
            worker.in_flight[(camera, pending.header.seq)] = None
            self.counters.add("dispatched", camera)
            self.counters.add("workers", worker.name, "dispatched")
            return ident, pending
        return None

    def any_worker(self) -> bytes | None:
        """A worker to carry a status message to the sink: the one heard from most recently."""
        live = [w for w in self.workers.values() if not w.leaving]
        return max(live, key=lambda w: w.last_seen).ident if live else None

    # -- end of stream -------------------------------------------------------------------------

    def end_of_stream(self, camera: str, body: dict[str, Any]) -> None:
        self._eos[camera] = body

    def drained(self) -> list[dict[str, Any]]:
        """``eos`` messages now due: the camera's queue is empty and nothing of it is in flight."""
        out = []
        for camera, body in list(self._eos.items()):
            if self._queues.get(camera):
                continue
            if any(key[0] == camera for w in self.workers.values() for key in w.in_flight):
                continue
            del self._eos[camera]
            out.append({**body, "results": self._completed.get(camera, 0)})
        return out

    def load(self) -> dict[str, Any]:
        """Who holds what now: ``workers`` (name, credits, in_flight, dispatched, completed,
        leaving) and ``backlog`` (frames waiting, per camera)."""
        return {"workers": [{"name": w.name, "credits": w.credits, "in_flight": len(w.in_flight),
                             "dispatched": self.counters.get("workers", w.name, "dispatched"),
                             "completed": self.counters.get("workers", w.name, "completed"),
                             "leaving": w.leaving} for w in self.workers.values()],
                "backlog": {camera: len(q) for camera, q in self._queues.items()}}

    def stats(self) -> dict[str, Any]:
        snap = self.counters.snapshot()
        snap["backlog"] = self.backlog()
        snap["known_workers"] = {w.name: {"credits": w.credits, "in_flight": len(w.in_flight)}
                                 for w in self.workers.values()}
        return snap
