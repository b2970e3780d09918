"""One camera's results put back in seq order before tracking. Pure logic, no sockets or clock.

Workers answer in whatever order they finish, so results of one camera reach the sink out of
order; a tracker fed out of order sees objects jump back and forth. A :class:`Reorder` holds
each result until the ones before it are in, bounded both ways:

- by count: at most ``window`` results are held; one more releases the oldest, skipping the
  seqs that never came (a frame dropped by the ventilator, lost with a worker, or never sent);
- by time: a result held ``max_wait_s`` (monotonic, passed in as ``now``) is released, with the
  gap before it skipped, so a camera whose next frame never comes is not stalled.

A result that names the seq sent before it (``prev``, stamped by the extractor) goes out as
soon as that one has: a sampling or motion-gate gap in seq is no loss and costs no wait.

A result behind what was already released is *late*: it is counted by the caller (``late``)
and handed back for nothing but counting; the tracker has moved on. A seq behind the cursor
with a capture time past everything released is an extractor that restarted (its seq starts
again at 0, its clock does not): what is held goes out and the order starts afresh.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

DEFAULT_WINDOW = 32  # results: a pool of 8 workers taking 4 frames each may answer that far apart
DEFAULT_MAX_WAIT_S = 1.0


@dataclass(order=True, slots=True)
class Held(Generic[T]):
    seq: int
    ts_ns: int = field(compare=False)
    arrived: float = field(compare=False)
    item: Any = field(compare=False)
    prev: int | None = field(compare=False, default=None)


class Reorder(Generic[T]):
    """``push`` results of one camera as they come; what it returns is in seq order."""

    def __init__(self, window: int = DEFAULT_WINDOW, max_wait_s: float = DEFAULT_MAX_WAIT_S) -> None:
        if window < 1:
            raise ValueError("window: at least 1")
        self.window, self.max_wait_s = window, max_wait_s
        self._held: list[Held] = []
        self._seqs: set[int] = set()
        self.newest = -1  # the highest seq pushed
        self.out_of_order = 0  # results that came after one with a higher seq
        self.cursor: int | None = None  # the next seq to release; None until the first release
        self.last_ts_ns = -1  # capture time of the newest result released
        self.late = 0  # results behind the cursor, or held twice
        self.skipped = 0  # seqs given up on: a gap released past

    def push(self, seq: int, ts_ns: int, item: T, now: float, prev: int | None = None) -> tuple[list[T], bool]:
        """Take one result; returns what is released now, in order, and whether ``item`` was late.
        ``prev``: the seq sent before it (-1: none), when the sender knows it."""
        out: list[T] = []
        if self.cursor is not None and seq < self.cursor:
            if ts_ns <= self.last_ts_ns:
                self.late += 1
                return out, True
            out += self.flush()  # the extractor restarted: seq runs from 0 again
            self.cursor, self.newest = None, -1
        if seq in self._seqs:  # the same frame twice (a worker's result sent again): a duplicate
            self.late += 1
            return out, True
        if seq < self.newest:
            self.out_of_order += 1
        self.newest = max(self.newest, seq)
        heapq.heappush(self._held, Held(seq, ts_ns, now, item, prev))
        self._seqs.add(seq)
        while len(self._held) > self.window:
            out.append(self._pop())
        out += self._contiguous()
        return out, False

    def expire(self, now: float) -> list[T]:
        """Release what has waited ``max_wait_s``, and everything in order behind it."""
        out: list[T] = []
        while self._held and now - min(h.arrived for h in self._held) >= self.max_wait_s:
            out.append(self._pop())
            out += self._contiguous()
        return out

    def flush(self) -> list[T]:
        """Everything held, in order (the camera ended, or the sink stops)."""
        out = []
        while self._held:
            out.append(self._pop())
        return out

    def __len__(self) -> int:
        return len(self._held)

    def _contiguous(self) -> list[T]:
        out = []
        while self._held and self._follows(self._held[0]):
            out.append(self._pop())
        return out

    def _follows(self, held: Held) -> bool:
        """Nothing can come before ``held``: it is the next seq, or the one sent after the last out."""
        if self.cursor is None:
            return held.prev == -1  # the first frame its extractor sent
        return held.seq == self.cursor or (held.prev is not None and held.prev == self.cursor - 1)

    def _pop(self) -> T:
        held = heapq.heappop(self._held)
        self._seqs.discard(held.seq)
        if self.cursor is not None and held.seq > self.cursor and not self._follows(held):
            self.skipped += held.seq - self.cursor
        self.cursor = held.seq + 1
        self.last_ts_ns = max(self.last_ts_ns, held.ts_ns)
        return held.item
