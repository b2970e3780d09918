"""The ventilator's decisions, with no sockets: which frame waits, which is dropped, who gets work.

- Workers ask for work with credits; a credit is one frame a worker can take now. Credits are
  used oldest first (the worker free longest gets the next frame), so load is shared by
  availability, not by turns: a busy worker simply gets nothing.
- What one worker can ask for is bounded: its credits plus the frames it holds never pass
  ``max_credits`` (the rest of a greedy ``ready`` is refused and counted), and the pool never
  passes ``max_workers``, so no peer can make the ventilator's tables grow without end.
- Routing by detector: each worker serves one detector (its ``ready`` says which), and a camera
  may name the detector(s) it wants (``routes``). A frame of such a camera waits once per
  detector it wants, in that detector's group, and goes to one worker serving it; a camera that
  names none goes to any worker (ANY); a worker that names no detector takes only those. Within a group cameras take turns; a worker that may take from its own group and
  from ANY takes the frame that has waited longer. Credits, superseding, losses and deadlines
  work per delivery exactly as with one group, so a camera with two detectors counts each frame
  dispatched and completed twice (and the sink gets two results for it, one per detector).
- A frame for a detector that no connected worker serves is not queued (it would wait for ever,
  and a file's frames would pause the frontend for every camera): it is counted
  ``unserved/<camera>/<detector>`` and reported (:meth:`Dispatcher.unserved_now`). Frames that
  wait when the last worker of a detector leaves are counted so too. Only while the pool is
  empty does everything wait, as it always has: nobody serves anything yet.
- A live camera keeps at most its newest frame while no worker is free: a newer frame replaces
  the waiting one (counted ``superseded``), so latency stays bounded under overload.
- A file read as fast as the pipeline takes it (``live`` false) is never superseded; its frames
  queue, and the daemon stops reading its frontend while the backlog is full, which is what
  makes the extractor wait.
- Every frame handed to a worker is remembered until the worker reports it done, so a worker
  that dies costs exactly its in-flight frames, counted per camera as ``worker_lost``. A frame
  held past ``frame_deadline`` is counted lost (``deadline``) and taken back from the worker's
  account, so a worker that takes frames and never answers costs counted losses, nothing more.
- Which cameras have a place is common.admission's policy: the configured ones always, the
  rest from a pool of ``max_cameras`` that forgets a camera idle for ``camera_idle_s``
  (:meth:`Dispatcher.forget_idle`: its queues, eos and counts go, its counters fold into
  ``other``). A frame of a new camera while the pool is full is counted
  (``cameras_refused/pool_full/<peer>``) and dropped, never stored.
- A camera's ``eos`` is passed on only when its last frame is done, with the number of results
  the sink should expect, so the sink knows when that camera has drained.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import msgspec

from camwire.common.admission import DEFAULT_IDLE_S, DEFAULT_POOL, Admission
from camwire.common.counters import Counters
from camwire.common.wire import Buffer, Eos, FrameHeader, WorkerLoad

MAX_CREDITS = 1024  # a worker's credits plus frames held: far above any --batch, far below harm
MAX_WORKERS = 1024  # the pool; a Workers message holds at most 4096
ANY = ""  # the group of cameras that name no detector (and of workers that name none); no name is ""
Key = tuple[str, int]  # (camera, seq)
Routes = Mapping[str, Sequence[str]]  # camera -> the detectors it wants


@dataclass(slots=True)
class Pending:
    header: FrameHeader
    parts: Sequence[Buffer]
    group: str = ANY  # the detector it waits for
    order: int = 0  # when it came: a worker that may take from two groups takes the older


@dataclass(slots=True)
class WorkerState:
    ident: bytes
    name: str
    last_seen: float
    detector: str = ANY  # the detector it serves
    in_flight: dict[Key, float] = field(default_factory=dict)  # frame -> when it was sent
    credits: int = 0
    leaving: bool = False
    last_done: float = -1.0  # when it last reported a frame done: it reaches the sink


class Dispatcher:
    """Queues, credits and accounting for one ventilator."""

    def __init__(self, max_backlog: int = 64, counters: Counters | None = None, frame_deadline: float = 30.0,
                 max_cameras: int = DEFAULT_POOL, max_credits: int = MAX_CREDITS, max_workers: int = MAX_WORKERS,
                 routes: Routes | None = None, configured: Iterable[str] = (),
                 camera_idle_s: float = DEFAULT_IDLE_S) -> None:
        self.max_backlog, self.frame_deadline = max_backlog, frame_deadline
        self.max_credits, self.max_workers = max_credits, max_workers
        self.counters = counters if counters is not None else Counters()
        self.workers: dict[bytes, WorkerState] = {}
        self.admission = Admission(self.counters, configured, max_cameras, camera_idle_s)
        self.routes: dict[str, tuple[str, ...]] = {}
        self.unserved: dict[tuple[str, str], int] = {}  # (camera, detector) -> frames no worker could take
        self._queues: dict[tuple[str, str], deque[Pending]] = {}  # (group, camera) -> frames waiting
        self._ready: dict[str, deque[str]] = {}  # group -> cameras with a waiting frame, in turn order
        self._tokens: dict[str, deque[tuple[int, bytes]]] = {}  # group -> one (stamp, worker) per credit
        self._stamps = itertools.count()  # credits' and frames' arrival, across groups
        self._serving: Counter[str] = Counter()  # detector -> workers serving it (not leaving)
        self._eos: dict[str, Eos] = {}
        self._completed: dict[str, int] = {}
        self.set_routes(routes or {})

    # -- cameras -------------------------------------------------------------------------------

    def admit(self, camera: str, now: float | None = None, peer: Any = None) -> bool:
        """Whether ``camera`` has a place (common.admission); counted per ``peer`` when refused."""
        return self.admission.admit(camera, time.monotonic() if now is None else now, peer)

    @property
    def cameras(self) -> set[str]:
        """The cameras with a place: the configured ones and the pool's."""
        return self.admission.names()

    def set_configured(self, names: Iterable[str], now: float | None = None) -> None:
        """The config's cameras again (a reload): one taken out that finds no room in the pool is forgotten."""
        for camera in self.admission.set_configured(names, time.monotonic() if now is None else now):
            self._forget_camera(camera)

    def forget_idle(self, now: float) -> list[str]:
        """Forget the pool's cameras silent for its idle time, except those with frames waiting, in
        flight or an eos not yet due (they are kept as if heard now); returns those forgotten."""
        busy: set[str] | None = None

        def is_busy(camera: str) -> bool:
            nonlocal busy
            if busy is None:  # only when a camera is due: a walk over what waits and is in flight
                busy = {c for (_, c), q in self._queues.items() if q} | set(self._eos)
                busy |= {key[0] for w in self.workers.values() for key in w.in_flight}
            return camera in busy

        gone = self.admission.expire(now, is_busy)
        for camera in gone:
            self._forget_camera(camera)
        return gone

    def _forget_camera(self, camera: str) -> None:
        """Everything held for a camera that lost its place; its counts stay in the totals as ``other``."""
        for key in [k for k in self._queues if k[1] == camera]:
            del self._queues[key]
        for key in [k for k in self.unserved if k[0] == camera]:
            del self.unserved[key]
        self._eos.pop(camera, None)
        self._completed.pop(camera, None)
        self.counters.fold("camera", camera)

    def set_routes(self, routes: Routes) -> None:
        """Which detectors each camera wants (at start and on reload); frames already waiting stay
        where they are, the next ones follow the new routes."""
        self.routes = {camera: tuple(dict.fromkeys(wanted)) for camera, wanted in routes.items() if wanted}
        self.unserved = {k: n for k, n in self.unserved.items() if k[1] in self.routes.get(k[0], ())}

    def serves(self, detector: str) -> bool:
        """Whether a frame for ``detector`` may wait: a worker serves it, or the pool is empty."""
        return detector == ANY or self._serving[detector] > 0 or not self._serving

    # -- frames in -----------------------------------------------------------------------------

    def offer(self, header: FrameHeader, parts: Sequence[Buffer], now: float | None = None, peer: Any = None) -> bool:
        """Queue a checked frame once per detector its camera wants; False when its camera finds
        no place (counted per ``peer``, dropped)."""
        camera = header.camera
        if not self.admit(camera, now, peer):
            return False
        self.counters.add("received", camera)
        order = next(self._stamps)
        for group in self.routes.get(camera, (ANY,)):
            if not self.serves(group):
                self._count_unserved(camera, group)
                continue
            queue = self._queues.setdefault((group, camera), deque())
            if not queue:  # a camera is in its group's turn order once, while it waits
                self._ready.setdefault(group, deque()).append(camera)
            elif header.live:
                self.counters.add("dropped", camera, "superseded", n=len(queue))
                queue.clear()
            queue.append(Pending(header, parts, group, order))
        return True

    def _count_unserved(self, camera: str, detector: str, n: int = 1) -> None:
        self.counters.add("unserved", camera, detector, n=n)
        self.unserved[(camera, detector)] = self.unserved.get((camera, detector), 0) + n

    def backlog(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def accepting(self) -> bool:
        return self.backlog() < self.max_backlog

    # -- workers -------------------------------------------------------------------------------

    def worker_seen(self, ident: bytes, name: str, now: float,
                    detector: str = ANY) -> tuple[WorkerState | None, bool]:
        """Returns the worker (None when the pool is full: counted) and whether it was new to us."""
        worker = self.workers.get(ident)
        if worker is None:
            if len(self.workers) >= self.max_workers:
                self.counters.add("refused", "max_workers")
                return None, False
            worker = self.workers[ident] = WorkerState(ident, name, now, detector)
            self._pool_changed()
            return worker, True
        worker.last_seen = now
        return worker, False

    def ready(self, ident: bytes, name: str, credits: int, done: Iterable[Key], now: float,
              detector: str = ANY) -> WorkerState | None:
        """A worker's ``ready``: frames it finished, and credits for more (capped, see above).
        ``detector``: the one it serves (ANY: none named)."""
        worker, _ = self.worker_seen(ident, name, now, detector)
        if worker is None:
            return None
        if worker.detector != detector:  # restarted serving another: its credits were for the old one
            self._drop_tokens(ident)
            worker.detector = detector
            self._pool_changed()
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
            self._tokens.setdefault(worker.detector, deque()).extend(
                (next(self._stamps), ident) for _ in range(credits))
        return worker

    def leaving(self, ident: bytes) -> None:
        """A worker shutting down: it gets no more work, but what it holds is still its own."""
        worker = self.workers.get(ident)
        if worker is not None:
            worker.leaving = True
            self._drop_tokens(ident)
            self._pool_changed()

    def forget(self, ident: bytes, reason: str) -> list[Key]:
        """Drop a worker (gone or silent); its in-flight frames are counted lost per camera."""
        worker = self.workers.get(ident)
        if worker is None:
            return []
        self._drop_tokens(ident)
        del self.workers[ident]
        self._pool_changed()
        lost = list(worker.in_flight)
        for camera, _seq in lost:
            self.counters.add("dropped", camera, "worker_lost")
        if lost:
            self.counters.add("workers", worker.name, "lost", n=len(lost))
        self.counters.add("workers_forgotten", reason)
        return lost

    def _pool_changed(self) -> None:
        """Who serves what, again; frames waiting for a detector nobody serves now are unserved."""
        self._serving = Counter(w.detector for w in self.workers.values() if not w.leaving)
        for (group, camera), queue in self._queues.items():
            if queue and not self.serves(group):
                self._count_unserved(camera, group, n=len(queue))
                queue.clear()
                self._ready[group].remove(camera)

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
        worker = self.workers.get(ident)
        if worker is None:
            return
        tokens = self._tokens.get(worker.detector)
        if tokens:
            self._tokens[worker.detector] = deque(t for t in tokens if t[1] != ident)
        worker.credits = 0

    def requeue(self, ident: bytes, pending: Pending) -> None:
        """A send that failed: the frame goes back to the front of its camera's queue."""
        worker = self.workers.get(ident)
        if worker is not None:
            worker.in_flight.pop((pending.header.camera, pending.header.seq), None)
            self.counters.add("workers", worker.name, "dispatched", n=-1)
        self.counters.add("dispatched", pending.header.camera, n=-1)
        queue = self._queues.setdefault((pending.group, pending.header.camera), deque())
        if not queue:
            self._ready.setdefault(pending.group, deque()).appendleft(pending.header.camera)
        queue.appendleft(pending)

    # -- frames out ----------------------------------------------------------------------------

    def next_dispatch(self, now: float = 0.0) -> tuple[bytes, Pending] | None:
        """The next (worker, frame) to send, or None when nothing waits or nobody is free to take it."""
        while (pick := self._pick()) is not None:
            group, source = pick
            _, ident = self._tokens[group].popleft()
            worker = self.workers[ident]
            turn = self._ready[source]
            camera = turn.popleft()
            queue = self._queues[(source, camera)]
            pending = queue.popleft()
            if queue:
                turn.append(camera)  # round-robin between cameras
            worker.credits -= 1
            worker.in_flight[(camera, pending.header.seq)] = now
            self.counters.add("dispatched", camera)
            self.counters.add("workers", worker.name, "dispatched")
            return ident, pending
        return None

    def _pick(self) -> tuple[str, str] | None:
        """(the workers' group whose oldest credit goes next, the group of frames it takes from):
        of the groups whose workers have a credit and a frame they may take."""
        best: tuple[int, str, str] | None = None
        for group, tokens in self._tokens.items():
            while tokens and not self._usable(tokens[0][1], group):
                tokens.popleft()  # a credit of a worker since gone or leaving
            if not tokens:
                continue
            source = self._source(group)
            if source is not None and (best is None or tokens[0][0] < best[0]):
                best = (tokens[0][0], group, source)
        return None if best is None else best[1:]

    def _usable(self, ident: bytes, group: str) -> bool:
        worker = self.workers.get(ident)
        return worker is not None and not worker.leaving and worker.detector == group

    def _source(self, group: str) -> str | None:
        """Where a worker of ``group`` takes its next frame: its own group or ANY, whichever's next
        frame has waited longer; None when neither has one."""
        heads = [(self._queues[(g, self._ready[g][0])][0].order, g)
                 for g in dict.fromkeys((group, ANY)) if self._ready.get(g)]
        return min(heads)[1] if heads else None

    def any_worker(self) -> bytes | None:
        """A worker to carry a status message to the sink: the one that finished a frame most
        recently (so one that takes frames and never answers carries no ``eos``), else the one
        heard from most recently."""
        live = [w for w in self.workers.values() if not w.leaving]
        return max(live, key=lambda w: (w.last_done, w.last_seen)).ident if live else None

    # -- end of stream -------------------------------------------------------------------------

    def end_of_stream(self, eos: Eos, now: float | None = None, peer: Any = None) -> bool:
        if not self.admit(eos.camera, now, peer):
            return False
        self._eos[eos.camera] = eos
        return True

    def drained(self) -> list[Eos]:
        """``eos`` messages now due: the camera's queues are empty and nothing of it is in flight."""
        out = []
        for camera, eos in list(self._eos.items()):
            if any(q for (_, c), q in self._queues.items() if c == camera):
                continue
            if any(key[0] == camera for w in self.workers.values() for key in w.in_flight):
                continue
            del self._eos[camera]
            out.append(msgspec.structs.replace(eos, results=self._completed.get(camera, 0)))
        return out

    def unserved_now(self) -> dict[tuple[str, str], int]:
        """(camera, detector) -> frames counted unserved, for each detector a camera wants that no
        connected worker serves now."""
        return {key: n for key, n in self.unserved.items()
                if key[1] in self.routes.get(key[0], ()) and not self.serves(key[1])}

    def load(self) -> tuple[list[WorkerLoad], dict[str, int]]:
        """Who holds what now (each worker's detector, credits, frames in flight, dispatched,
        completed, lost) and the frames waiting per camera."""
        c = self.counters
        workers = [WorkerLoad(name=w.name, credits=w.credits, in_flight=len(w.in_flight),
                              dispatched=max(0, c.get("workers", w.name, "dispatched")),
                              completed=c.get("workers", w.name, "completed"), lost=c.get("workers", w.name, "lost"),
                              leaving=w.leaving, detector=w.detector or None) for w in self.workers.values()]
        backlog: dict[str, int] = {}
        for (_, camera), queue in self._queues.items():
            backlog[camera] = backlog.get(camera, 0) + len(queue)
        return workers, backlog

    def stats_extra(self) -> dict:
        return {"backlog": self.backlog(),
                "known_workers": {w.name: {"credits": w.credits, "in_flight": len(w.in_flight),
                                           "detector": w.detector or None} for w in self.workers.values()}}
