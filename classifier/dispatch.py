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
  names none goes to any worker (ANY); a worker that names no detector takes only those. A
  worker that may take from its own group and from ANY takes from the one whose next frame (of
  the camera whose turn it is there) has waited longer. Credits, superseding, losses and
  deadlines work per delivery exactly as with one group, so a camera with two detectors counts
  each frame dispatched and completed twice (and the sink gets two results for it, one per
  detector).
- Fair turns by weight: within a group the cameras with a frame waiting take turns, each in
  proportion to its ``weight`` (the config's, :meth:`Dispatcher.set_weights`; 1 for any camera
  not named), so under overload a camera of weight 2 gets twice the frames of one of weight 1
  (a live camera never more than it sends), and identical cameras the same. Start-time fair
  queueing (:class:`Turns`): O(log n) a frame for hundreds of cameras. A camera back from an idle
  spell, or new, starts level with the others, with no credit for the turns it missed; one whose
  next frame was merely on its way keeps its place (:data:`OWED`). Superseding keeps a camera's
  place; a frame given back (a failed send) goes first again. Fairness is within a group: across
  a worker's two groups the older frame goes first, as above.
- A frame for a detector that no connected worker serves is not queued (it would wait for ever,
  and a file's frames would pause the frontend for every camera): it is counted
  ``unserved/<camera>/<detector>`` and reported (:meth:`Dispatcher.unserved_now`). Frames that
  wait when the last worker of a detector leaves are counted so too. Only while the pool is
  empty does everything wait, as it always has: nobody serves anything yet.
- A live camera keeps at most its newest frame while no worker is free: a newer frame replaces
  the waiting one (counted ``superseded``), so latency stays bounded under overload.
- The drop hook (``on_drop(pending, reason)``): each frame waits as one :class:`Pending` per
  detector its camera wants, and every Pending either goes to a worker (:meth:`next_dispatch`)
  or is passed to the hook exactly once, after the tables are right again: ``superseded``,
  ``unserved`` (no worker serves its detector: at once when it comes, or when the last one
  leaves while it waits) or ``forgotten`` (its camera lost its place). Frames handed to a worker
  and lost there are not (they were sent: the counters say ``worker_lost``/``deadline``); a frame
  refused by the pool (:meth:`offer` False) never became a Pending. It counts nothing: the
  counters above do. The ventilator uses it to give a frame's shared memory back.
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
- Every delivery (a Pending) lands in exactly one final bucket of its camera's account
  (:attr:`Dispatcher.accounts`, common.frame_account: what each bucket means, and that a late
  answer moves a lost frame to ``late``); :meth:`Dispatcher.account` reports it with what still
  waits or is in flight.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import msgspec

from camwire.common.admission import DEFAULT_IDLE_S, DEFAULT_POOL, Admission
from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.frame_account import FrameAccounts
from camwire.common.wire import Buffer, Eos, FrameHeader, WorkerLoad

MAX_CREDITS = 1024  # a worker's credits plus frames held: far above any --batch, far below harm
MAX_WORKERS = 1024  # the pool; a Workers message holds at most 4096
ANY = ""  # the group of cameras that name no detector (and of workers that name none); no name is ""
Key = tuple[str, int]  # (camera, seq)
Routes = Mapping[str, Sequence[str]]  # camera -> the detectors it wants
Weights = Mapping[str, float]  # camera -> its share under overload, against 1 for a camera not named


@dataclass(slots=True)
class Pending:
    header: FrameHeader
    parts: Sequence[Buffer]
    group: str = ANY  # the detector it waits for
    order: int = 0  # when it came: a worker that may take from two groups takes the older


OnDrop = Callable[[Pending, str], None]  # a frame let go without a worker, and why
# How far behind the group's virtual time a camera that waits again may be and keep its pass, in
# rounds: a round is the stride of a camera of weight 1 (everyone's unless named), or its own when
# longer. Anything further behind was idle, and starts again with no credit. Measured with live
# cameras (tests/classifier/test_dispatch.py's overload), whose one frame each is often on its
# way: weights 2:1:1 at 2x overload give the weight-2 camera 0.500 of the frames (textbook
# start-time fair queueing, which owes nothing: 0.448); 5:1:1:1:1 at 3x give the weight-5 one
# 0.536 of its 0.556 (0.313). Counted in its own strides instead, a heavy camera would be owed
# almost nothing: a single weight-1 camera's turn puts it that far behind.
OWED = 2.0


class Turns:
    """One group's fair turns between the cameras waiting in it: start-time fair queueing.

    Each camera has a ``pass``, where its next frame starts in the group's virtual time; the
    waiting camera with the least pass goes next, and going costs it its stride, ``1/weight``,
    so under overload each camera is served in proportion to its weight. The group's virtual
    time is the greatest pass served so far. A camera that starts waiting again after an idle
    spell (or a new one) starts at the virtual time: the turns it missed are not credit to spend
    in a burst. But one only briefly behind keeps its pass (:data:`OWED`): a live camera has
    nothing waiting from the moment its frame is sent until its next one comes, and the turns
    others take in that gap are its due, not idleness (a burst after a short silence: two rounds'
    share at most). Equal passes go in the order the cameras took their place in line: plain
    round-robin when all weights are equal. O(log n) per frame: a heap whose entries go stale
    instead of being removed (an entry is live while its ticket is its camera's), swept when they
    outnumber the live ones.
    """

    __slots__ = ("vtime", "_passes", "_tickets", "_heap", "_count")

    def __init__(self) -> None:
        self.vtime = 0.0
        self._passes: dict[str, float] = {}  # camera -> its pass; kept while it is not waiting
        self._tickets: dict[str, int] = {}  # camera -> its live heap entry's ticket, while it waits
        self._heap: list[tuple[float, int, str]] = []  # (pass, ticket, camera)
        self._count = itertools.count(1)

    def join(self, camera: str, stride: float) -> None:
        """``camera`` has a frame waiting now (it had none): it keeps its pass if that is at most
        :data:`OWED` rounds behind the virtual time, else (new, or idle) it starts at the virtual time."""
        if camera not in self._tickets:
            start = self._passes.get(camera, self.vtime)
            if start < self.vtime - OWED * max(stride, 1.0):
                start = self.vtime
            self._push(camera, start, next(self._count))

    def front(self, camera: str) -> None:
        """``camera`` goes first (a frame given back): at the least pass waiting, ahead of any
        other there; right after it was served that is its pass before, so the turn is not lost."""
        head = self.head()
        start = self.vtime if head is None else min(self.vtime, self._heap[0][0])
        self._push(camera, start, -next(self._count))

    def head(self) -> str | None:
        """The camera whose turn it is, None when none waits."""
        heap = self._heap
        while heap and self._tickets.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)  # stale: the camera left, or was put elsewhere since
        return heap[0][2] if heap else None

    def served(self, camera: str, stride: float, waiting: bool) -> None:
        """``camera`` (the one :meth:`head` named just now: its entry is the heap's top) sent a
        frame, costing it ``stride``; ``waiting``: it has another."""
        start = self._passes[camera]
        self.vtime = max(self.vtime, start)
        self._passes[camera] = start + stride
        if waiting:
            ticket = next(self._count)
            self._tickets[camera] = ticket
            heapq.heapreplace(self._heap, (start + stride, ticket, camera))
        else:
            del self._tickets[camera]
            heapq.heappop(self._heap)

    def leave(self, camera: str) -> None:
        """``camera`` has nothing waiting any more (cleared); its pass stays."""
        if self._tickets.pop(camera, None) is not None:
            self._sweep()

    def forget(self, camera: str) -> None:
        self.leave(camera)
        self._passes.pop(camera, None)

    def _push(self, camera: str, start: float, ticket: int) -> None:
        self._passes[camera] = start
        self._tickets[camera] = ticket
        heapq.heappush(self._heap, (start, ticket, camera))
        self._sweep()

    def _sweep(self) -> None:
        """Stale entries out once they outnumber the live ones: the heap stays O(cameras waiting)."""
        if len(self._heap) > 2 * len(self._tickets) + 16:
            self._heap = [e for e in self._heap if self._tickets.get(e[2]) == e[1]]
            heapq.heapify(self._heap)


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
                 camera_idle_s: float = DEFAULT_IDLE_S, weights: Weights | None = None,
                 on_drop: OnDrop | None = None) -> None:
        self.max_backlog, self.frame_deadline = max_backlog, frame_deadline
        self.max_credits, self.max_workers = max_credits, max_workers
        self.counters = counters if counters is not None else Counters()
        self.workers: dict[bytes, WorkerState] = {}
        self.admission = Admission(self.counters, configured, max_cameras, camera_idle_s)
        self.routes: dict[str, tuple[str, ...]] = {}
        self.unserved: dict[tuple[str, str], int] = {}  # (camera, detector) -> frames no worker could take
        self._queues: dict[tuple[str, str], deque[Pending]] = {}  # (group, camera) -> frames waiting
        self._turns: dict[str, Turns] = {}  # group -> its cameras with a waiting frame, in fair turns
        self.weights: dict[str, float] = {}
        self.on_drop = on_drop
        self._tokens: dict[str, deque[tuple[int, bytes]]] = {}  # group -> one (stamp, worker) per credit
        self._stamps = itertools.count()  # credits' and frames' arrival, across groups
        self._serving: Counter[str] = Counter()  # detector -> workers serving it (not leaving)
        self._eos: dict[str, Eos] = {}
        self._completed: dict[str, int] = {}
        self.accounts = FrameAccounts()  # every delivery in one final bucket, per camera
        self.set_routes(routes or {})
        self.set_weights(weights or {})

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
        dropped = []
        for key in [k for k in self._queues if k[1] == camera]:
            dropped += self._queues.pop(key)
        for turns in self._turns.values():
            turns.forget(camera)
        for key in [k for k in self.unserved if k[0] == camera]:
            del self.unserved[key]
        self._eos.pop(camera, None)
        self._completed.pop(camera, None)
        self.counters.fold("camera", camera)
        self.accounts.forget(camera)
        self._drop(dropped, "forgotten")

    def set_routes(self, routes: Routes) -> None:
        """Which detectors each camera wants (at start and on reload); frames already waiting stay
        where they are, the next ones follow the new routes."""
        self.routes = {camera: tuple(dict.fromkeys(wanted)) for camera, wanted in routes.items() if wanted}
        self.unserved = {k: n for k, n in self.unserved.items() if k[1] in self.routes.get(k[0], ())}

    def set_weights(self, weights: Weights) -> None:
        """Each camera's share under overload (at start and on reload), against 1 for any camera
        not named; the next frames pay the new price, the turns already earned stay."""
        bad = {camera: w for camera, w in weights.items() if not w > 0}
        if bad:
            raise ValueError(f"a camera's weight must be above 0: {bad}")
        self.weights = {camera: float(w) for camera, w in weights.items() if w != 1}

    def _stride(self, camera: str) -> float:
        return 1.0 / self.weights.get(camera, 1.0)

    def serves(self, detector: str) -> bool:
        """Whether a frame for ``detector`` may wait: a worker serves it, or the pool is empty."""
        return detector == ANY or self._serving[detector] > 0 or not self._serving

    # -- frames in -----------------------------------------------------------------------------

    def offer(self, header: FrameHeader, parts: Sequence[Buffer], now: float | None = None, peer: Any = None) -> bool:
        """Queue a checked frame once per detector its camera wants, as one Pending each (one that
        no worker serves goes to ``on_drop`` at once); False when its camera finds no place
        (counted per ``peer``, dropped, no Pending made)."""
        camera = header.camera
        if not self.admit(camera, now, peer):
            return False
        self.counters.add("received", camera)
        order = next(self._stamps)
        for group in self.routes.get(camera, (ANY,)):
            pending = Pending(header, parts, group, order)
            self.accounts.received(camera)
            if not self.serves(group):
                self._count_unserved(camera, group)
                self._drop([pending], "unserved")
                continue
            queue = self._queues.setdefault((group, camera), deque())
            superseded = list(queue) if header.live else []
            if superseded:  # the camera keeps its place in line: only its frame is newer
                self.counters.add("dropped", camera, "superseded", n=len(superseded))
                self.accounts.ended(camera, "superseded", n=len(superseded))
                queue.clear()
            elif not queue:
                self._turns_of(group).join(camera, self._stride(camera))
            queue.append(pending)
            self._drop(superseded, "superseded")
        return True

    def _turns_of(self, group: str) -> Turns:
        turns = self._turns.get(group)
        if turns is None:
            turns = self._turns[group] = Turns()
        return turns

    def _drop(self, pendings: Iterable[Pending], reason: str) -> None:
        """Frames let go without a worker, to the hook (after the tables are right again, so the
        hook sees a consistent dispatcher)."""
        if self.on_drop is not None:
            for pending in pendings:
                self.on_drop(pending, reason)

    def _count_unserved(self, camera: str, detector: str, n: int = 1) -> None:
        self.counters.add("unserved", camera, detector, n=n)
        self.accounts.ended(camera, "unserved", n=n)
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
                self.accounts.ended(camera, "processed")
            elif self.accounts.answered_late(worker.detector, camera, seq):  # counted lost: now late only
                self.counters.add("late", "answered")
            else:  # lost too long ago to be remembered, or never sent: not counted twice
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
        for camera, seq in lost:
            self.counters.add("dropped", camera, "worker_lost")
            self.accounts.lost(worker.detector, camera, seq, "worker_lost")
        if lost:
            self.counters.add("workers", worker.name, "lost", n=len(lost))
        self.counters.add("workers_forgotten", reason)
        return lost

    def _pool_changed(self) -> None:
        """Who serves what, again; frames waiting for a detector nobody serves now are unserved."""
        self._serving = Counter(w.detector for w in self.workers.values() if not w.leaving)
        dropped: list[Pending] = []
        for (group, camera), queue in self._queues.items():
            if queue and not self.serves(group):
                self._count_unserved(camera, group, n=len(queue))
                dropped += queue
                queue.clear()
                self._turns[group].leave(camera)
        self._drop(dropped, "unserved")

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
                self.accounts.lost(worker.detector, key[0], key[1], "deadline")
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
        """A send that failed: the frame goes back to the front of its camera's queue, and its
        camera to the front of its group's turns."""
        worker = self.workers.get(ident)
        if worker is not None:
            worker.in_flight.pop((pending.header.camera, pending.header.seq), None)
            self.counters.add("workers", worker.name, "dispatched", n=-1)
        self.counters.add("dispatched", pending.header.camera, n=-1)
        queue = self._queues.setdefault((pending.group, pending.header.camera), deque())
        queue.appendleft(pending)
        self._turns_of(pending.group).front(pending.header.camera)

    # -- frames out ----------------------------------------------------------------------------

    def next_dispatch(self, now: float = 0.0) -> tuple[bytes, Pending] | None:
        """The next (worker, frame) to send, or None when nothing waits or nobody is free to take it."""
        while (pick := self._pick()) is not None:
            group, source = pick
            _, ident = self._tokens[group].popleft()
            worker = self.workers[ident]
            turns = self._turns[source]
            camera = turns.head()
            queue = self._queues[(source, camera)]
            pending = queue.popleft()
            turns.served(camera, self._stride(camera), waiting=bool(queue))
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
        heads = []
        for g in dict.fromkeys((group, ANY)):
            camera = self._turns[g].head() if g in self._turns else None
            if camera is not None:  # the camera whose turn it is: its frame, not the group's oldest
                heads.append((self._queues[(g, camera)][0].order, g))
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

    def account(self) -> dict[str, wire.PoolAccount]:
        """Each camera's frames by final bucket, with what waits and is in flight now
        (common.frame_account)."""
        waiting: Counter[str] = Counter()
        for (_, camera), queue in self._queues.items():
            waiting[camera] += len(queue)
        in_flight = Counter(key[0] for w in self.workers.values() for key in w.in_flight)
        return self.accounts.report(waiting, in_flight)

    def stats_extra(self) -> dict:
        return {"backlog": self.backlog(),
                "accounts": {c: msgspec.structs.asdict(a) for c, a in self.account().items()},
                "known_workers": {w.name: {"credits": w.credits, "in_flight": len(w.in_flight),
                                           "detector": w.detector or None} for w in self.workers.values()}}
