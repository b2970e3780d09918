"""What the ring may hold: files out by age (``--retain``), by total size (``--max-bytes``) and to
keep a share of the volume free (``--min-free``), the oldest first.

The free-space floor bounds what the ring takes of its volume, even with no byte budget given
(``--max-bytes`` has none by default): the ring files whose deletion frees space go, the oldest
first. It deletes ring files only, never evidence: kept clips (recorder.keep) and the sink's
snapshots go by their own budgets and ages alone. When the ring's own files cannot bring the
volume up to the floor (a foreign file holds the space, or kept clips within their budget),
:attr:`Retention.floor_met` is False and recording pauses until space returns (recorder.pause).

"Now" is the recorder's wall clock, never a capture time: one frame stamped days ahead (a camera
host whose clock jumped) must not age the whole ring at once. Capture times far from the wall
clock are clamped where they come in (:func:`capture_time`, used by the ring).

A delete unlinks the file first (that frees the space, even on a disk too full for SQLite to
write) and then its index row; a row that cannot be deleted yet stays, and the next round, which
finds its file gone, deletes it then. Kept clips are hard links, so deleting the ring path of a
kept file frees nothing: the floor leaves such a file in the ring and goes on to the next.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from camwire.common.settings import shared
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter
from camwire.recorder.index import Index, Segment

DAY_S = shared.DAY_S
DEFAULT_RETAIN_S, DEFAULT_KEEP_RETAIN_S = shared.RETAIN_S, shared.KEEP_RETAIN_S  # the settings' defaults
DEFAULT_MIN_FREE, DEFAULT_MAX_SKEW_S = shared.MIN_FREE, shared.MAX_SKEW_S


@dataclass(frozen=True)
class Limits:
    retain_s: float | None = DEFAULT_RETAIN_S
    max_bytes: int | None = None
    min_free: float = DEFAULT_MIN_FREE  # a share of the volume's size


def capture_time(ts_ns: int, wall_ns: int, max_skew_ns: int) -> tuple[int, bool]:
    """The capture time to record a frame under: its own, or the wall clock when the two are more
    than ``max_skew_ns`` apart (then True: the frame's clock is not to be trusted)."""
    if abs(ts_ns - wall_ns) > max_skew_ns:
        return wall_ns, True
    return ts_ns, False


def bytes_to_free(size: int, free: int, min_free: float) -> int:
    """How many bytes must go for ``free`` of a volume of ``size`` to reach ``min_free`` of it."""
    return max(0, int(size * min_free) - free)


class Retention:
    def __init__(self, root: Path, index: Index, limits: Limits, counters: Counters, log,
                 repeats: RepeatLimiter) -> None:
        self.root, self.index, self.limits = root, index, limits
        self.counters, self.log, self.repeats = counters, log, repeats
        # after each round: whether the volume is at the floor (or was brought there by deleting
        # ring files), and the volume's free bytes and size then (recorder.pause judges them)
        self.floor_met = True
        self.free, self.size = 0, 0

    def enforce(self) -> None:
        """One round: age, then size, then the free-space floor."""
        if self.limits.retain_s is not None:
            before_ns = time.time_ns() - int(self.limits.retain_s * 1e9)
            for seg in self.index.expired(before_ns):
                self._delete(seg, "age")
        if self.limits.max_bytes is not None:
            for seg in self.index.over_budget(self.limits.max_bytes):
                self._delete(seg, "bytes")
        if self.limits.min_free > 0:
            self._floor()
        else:
            self.floor_met = True

    def _need(self) -> int:
        st = os.statvfs(self.root)
        self.free, self.size = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        return bytes_to_free(self.size, self.free, self.limits.min_free)

    def _floor(self) -> None:
        """Ring files out, the oldest first, until the volume is at the floor; never a kept clip."""
        self.floor_met = True
        if self._need() <= 0:
            return
        for seg in self.index.oldest():
            if _links(self.root / seg.path) > 1:  # a kept clip's file too: its ring path frees nothing
                continue
            self._delete(seg, "min_free")
            if self._need() <= 0:
                return
        self.floor_met = False
        self.repeats("floor", "free space below --min-free and no ring file left whose deletion frees space; "
                     "kept clips are left alone", level="error", dir=str(self.root), min_free=self.limits.min_free,
                     free=self.free)

    def _delete(self, seg: Segment, reason: str) -> None:
        try:
            os.unlink(self.root / seg.path)
        except FileNotFoundError:
            pass
        try:
            self.index.delete_segment(seg.id)
        except sqlite3.OperationalError as exc:  # the file is gone; the row goes next round
            self.repeats("delete-row", "index row not deleted yet", level="error", error=str(exc))
            return
        self.counters.add("deleted", reason)
        self.log.info("segment deleted", camera=seg.camera, path=seg.path, reason=reason)


def _links(path: Path) -> int:
    """How many names the file has (a ring path and its kept clips' links); 0 when it is gone."""
    try:
        return os.stat(path).st_nlink
    except FileNotFoundError:
        return 0
