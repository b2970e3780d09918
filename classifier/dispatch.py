"""The ventilator's decisions, with no sockets: which frame waits, which is dropped, who gets work.

- Workers ask for work with credits; a credit is one frame a worker can take now. Credits are
  used oldest first (the worker free longest gets the next frame), so load is shared by
  availability, not by turns: a busy worker simply gets nothing.
- What one worker can ask for is bounded: its credits plus the frames it holds never pass
  ``max_credits`` (the rest of a greedy ``ready`` is refused and counted), and the pool never
  passes ``max_workers``, so no peer can make the ventilator's tables grow without end.
- A live camera keeps at most its newest frame while no worker is free: a newer frame replaces
  the waiting one (counted ``superseded``), so latency stays bounded under overload.
- A file read as fast as the pipeline takes it (``live`` false) is never superseded; its frames
  queue, and the daemon stops reading its frontend while the backlog is full, which is what
  makes the extractor wait.
- Every frame handed to a worker is remembered until the worker reports it done, so a worker
  that dies costs exactly its in-flight frames, counted per camera as ``worker_lost``. A frame
  held past ``frame_deadline`` is counted lost (``deadline``) and taken back from the worker's
  account, so a worker that takes frames and never answers costs counted losses, nothing more.
- At most ``max_cameras`` cameras are remembered; frames of any camera past that are counted
  (``refused/max_cameras``) and dropped, never stored.
- A camera's ``eos`` is passed on only when its last frame is done, with the number of results
  the sink should expect, so the sink knows when that camera has drained.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import msgspec

from common.counters import Counters
from common.wire import Buffer, Eos, FrameHeader, WorkerLoad

MAX_CREDITS = 1024  # a worker's credits plus frames held: far above any --batch, far below harm
MAX_WORKERS = 1024  # the pool; a Workers message holds at most 4096
Key = tuple[str, int]  # (camera, seq)


@dataclass(slots=True)
class Pending:
    header: FrameHeader
    parts: Sequence[Buffer]


@dataclass(slots=True)
class WorkerState:
    ident: bytes
    name: str
    last_seen: float
    in_flight: dict[Key, float] = field(default_factory=dict)  # frame -> when it was sent
    credits: int = 0
    leaving: bool = False
    last_done: float = -1.0  # when it last reported a frame done: it reaches the sink


class Dispatcher:
    """Queues, credits and accounting for one ventilator."""

    def __init__(self, max_backlog: int = 64, counters: Counters | None = None, frame_deadline: float = 30.0,
                 max_cameras: int = 1000, max_credits: int = MAX_CREDITS, max_workers: int = MAX_WORKERS) -> None:
        self.max_backlog, self.frame_deadline = max_backlog, frame_deadline
        self.max_cameras, self.max_credits, self.max_workers = max_cameras, max_credits, max_workers
        self.counters = counters if counters is not None else Counters()
        self.workers: dict[bytes, WorkerState] = {}
        self.cameras: set[str] = set()
        self._queues: dict[str, deque[Pending]] = {}
        self._ready_cameras: deque[str] = deque()  # cameras with a waiting frame, in turn order
        self._tokens: deque[bytes] = deque()  # one entry per credit, oldest first
        self._eos: dict[str, Eos] = {}
        self._completed: dict[str, int] = {}

    # -- cameras -------------------------------------------------------------------------------

    def admit(self, camera: str) -> bool:
        """Whether ``camera`` is (or may now become) one we remember; counted when refused."""
        if camera in self.cameras:
            return True
        if len(self.cameras) >= self.max_cameras:
            self.counters.add("refused", "max_cameras")
            return False
        self.cameras.add(camera)
        return True

    # -- frames in -----------------------------------------------------------------------------

    def offer(self, header: FrameHeader, parts: Sequence[Buffer]) -> bool:
        """Queue a checked frame; False when its camera is one too many (counted, dropped)."""
        camera = header.camera
        if not self.admit(camera):
            return False
        self.counters.add("received", camera)
        queue = self._queues.setdefault(camera, deque())
        if not queue:
            self._ready_cameras.append(camera)  # a camera is in the turn order once, while it waits
        elif header.live:
            self.counters.add("dropped", camera, "superseded", n=len(queue))
            queue.clear()
        queue.append(Pending(header, parts))
        return True

    def backlog(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def accepting(self) -> bool:
        return self.backlog() < self.max_backlog

    # -- workers -------------------------------------------------------------------------------

    def worker_seen(self, ident: bytes, name: str, now: float) -> tuple[WorkerState | None, bool]:
        """Returns the worker (None when the pool is full: counted) and whether it was new to us."""
        worker = self.workers.get(ident)
        if worker is None:
            if len(self.workers) >= self.max_workers:
                self.counters.add("refused", "max_workers")
                return None, False
            worker = self.workers[ident] = WorkerState(ident, name, now)
            return worker, True
        worker.last_seen = now
        return worker, False

    def ready(self, ident: bytes, name: str, credits: int, done: Iterable[Key], now: float) -> WorkerState | None:
        """A worker's ``ready``: frames it finished, and credits for more (capped, see above)."""
        worker, _ = self.worker_seen(ident, name, now)
        if worker is None:
            return None
        for camera, seq in done:
            key = (camera, seq)
            if key in worker.in_flight:
                del worker.in_flight[key]
                worker.last_done = now
                self.counters.add("completed", camera)
                self.counters.add("workers", worker.name, "completed")
                self._completed[camera] = self._completed.get(camera, 0) + 1
            else:  # already counted lost (deadline), or never sent: not counted twice
                self.counters.add("late", "unknown_done")
        if credits > 0 and not worker.leaving:
            room = max(0, self.max_credits - worker.credits - len(worker.in_flight))
            if credits > room:
                self.counters.add("refused", "credits", n=credits - room)
                credits = room
            worker.credits += credits
            self._tokens.extend([ident] * credits)
        return worker

    def leaving(self, ident: bytes) -> None:
        """A worker shutting down: it gets no more work, but what it holds is still its own."""
        worker = self.workers.get(ident)
        if worker is not None:
            worker.leaving = True
            self._drop_tokens(ident)

    def forget(self, ident: bytes, reason: str) -> list[Key]:
        """Drop a worker (gone or silent); its in-flight frames are counted lost per camera."""
        worker = self.workers.pop(ident, None)
        if worker is None:
            return []
        self._drop_tokens(ident)
        lost = list(worker.in_flight)
        for camera, _seq in lost:
            self.counters.add("dropped", camera, "worker_lost")
        if lost:
            self.counters.add("workers", worker.name, "lost", n=len(lost))
        self.counters.add("workers_forgotten", reason)
        return lost

    def expired(self, now: float, timeout: float) -> list[bytes]:
        return [w.ident for w in self.workers.values() if now - w.last_seen > timeout]

    def overdue(self, now: float) -> list[tuple[WorkerState, Key]]:
        """Frames held past the deadline: counted lost and taken off their worker's account."""
        out = []
        cutoff = now - self.frame_deadline
        for worker in self.workers.values():
            # in_flight is in send order, so the overdue ones are at its front
            for key, sent in list(worker.in_flight.items()):
                if sent > cutoff:
                    break
                del worker.in_flight[key]
                self.counters.add("dropped", key[0], "deadline")
                self.counters.add("workers", worker.name, "lost")
                out.append((worker, key))
        return out

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
            self.counters.add("workers", worker.name, "dispatched", n=-1)
        self.counters.add("dispatched", pending.header.camera, n=-1)
        queue = self._queues.setdefault(pending.header.camera, deque())
        if not queue:
            self._ready_cameras.appendleft(pending.header.camera)
        queue.appendleft(pending)

    # -- frames out ----------------------------------------------------------------------------

    def next_dispatch(self, now: float = 0.0) -> tuple[bytes, Pending] | None:
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
            worker.in_flight[(camera, pending.header.seq)] = now
            self.counters.add("dispatched", camera)
            self.counters.add("workers", worker.name, "dispatched")
            return ident, pending
        return None

    def any_worker(self) -> bytes | None:
        """A worker to carry a status message to the sink: the one that finished a frame most
        recently (so one that takes frames and never answers carries no ``eos``), else the one
        heard from most recently."""
        live = [w for w in self.workers.values() if not w.leaving]
        return max(live, key=lambda w: (w.last_done, w.last_seen)).ident if live else None

    # -- end of stream -------------------------------------------------------------------------

    def end_of_stream(self, eos: Eos) -> bool:
        if not self.admit(eos.camera):
            return False
        self._eos[eos.camera] = eos
        return True

    def drained(self) -> list[Eos]:
        """``eos`` messages now due: the camera's queue is empty and nothing of it is in flight."""
        out = []
        for camera, eos in list(self._eos.items()):
            if self._queues.get(camera):
                continue
            if any(key[0] == camera for w in self.workers.values() for key in w.in_flight):
                continue
            del self._eos[camera]
            out.append(msgspec.structs.replace(eos, results=self._completed.get(camera, 0)))
        return out

    def load(self) -> tuple[list[WorkerLoad], dict[str, int]]:
        """Who holds what now (each worker's credits, frames in flight, dispatched, completed,
        lost) and the frames waiting per camera."""
        c = self.counters
        workers = [WorkerLoad(name=w.name, credits=w.credits, in_flight=len(w.in_flight),
                              dispatched=max(0, c.get("workers", w.name, "dispatched")),
                              completed=c.get("workers", w.name, "completed"), lost=c.get("workers", w.name, "lost"),
                              leaving=w.leaving) for w in self.workers.values()]
        return workers, {camera: len(q) for camera, q in self._queues.items()}

    def stats_extra(self) -> dict:
        return {"backlog": self.backlog(),
                "known_workers": {w.name: {"credits": w.credits, "in_flight": len(w.in_flight)}
                                  for w in self.workers.values()}}
