"""What the recorder has on disk, for the web console: recorded ranges and MP4 clips.

Reads the recorder's ``DIR`` (recorder.index: ``index.db`` read-only, the ring's Matroska
segments, ``kept/`` event clips) and never writes there. Clips are the recorder's packets copied
into MP4 (recorder.clip.write_clip: the same cut as ``camwire clip``, no re-encoding), with the
index at the front (``faststart``) so a browser plays one as it loads. The recorder's encoded
segments are H.264 (libx264); passed-through camera packets are whatever the camera sends.

:class:`ClipCache` keeps the MP4s made, by key, within a byte budget: a file is written under a
temporary name and renamed, so a file half written is never served.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import av

from recorder.clip import write_clip
from recorder.index import Index, Segment
from recorder.ring import _probe  # how the recorder reads a file it was killed in: the same for one being written

TOUCH_S = 1.5  # segments less than this apart are one range (a cut, a dropped frame: no gap to show)
MP4_OPTIONS = {"movflags": "+faststart"}
# a ring file (recorder.ring: ``<UTC start>[-n].mkv``) or a kept link to one (``<camera>-<same>``)
STAMP = re.compile(r"(\d{8}T\d{6}\.\d{3})Z(?:-(\d+))?\.mkv$")
FOREVER_NS = 1 << 62

_open_ends: dict[tuple[str, int, int], int] = {}  # (path, size, mtime_ns) -> end_ns of an open segment
_open_ends_lock = threading.Lock()


def ranges(root: Path, camera: str | None, since: float | None,
           until: float | None) -> dict[str, list[tuple[float, float]]]:
    """Per camera, the recorded ranges that reach into [since, until] (seconds since the epoch),
    oldest first, cut to that window; segments that touch make one range. Open segments count up
    to their newest frame on disk. No index yet: nothing recorded."""
    since_ns = None if since is None else int(since * 1e9)
    until_ns = None if until is None else int(until * 1e9)
    out: dict[str, list[tuple[float, float]]] = {}
    for seg in _segments(root, camera, since_ns, until_ns, include_open=True):
        end_ns = seg.end_ns if seg.end_ns is not None else _open_end(root, seg)
        lo, hi = seg.start_ns, end_ns
        if since_ns is not None:
            lo = max(lo, since_ns)
        if until_ns is not None:
            hi = min(hi, until_ns)
        if hi < lo:  # an open segment whose frames on disk end before the window
            continue
        spans = out.setdefault(seg.camera, [])
        if spans and lo / 1e9 - spans[-1][1] < TOUCH_S:
            spans[-1] = (spans[-1][0], max(spans[-1][1], hi / 1e9))
        else:
            spans.append((lo / 1e9, hi / 1e9))
    return out


def export_range(root: Path, camera: str, start: float, end: float, out: Path) -> Path:
    """``camera``'s video for [start, end) (seconds since the epoch) as ``out`` (MP4 for a .mp4
    name), from the key frame at or before ``start``; LookupError when nothing is recorded there."""
    start_ns, end_ns = int(start * 1e9), int(end * 1e9)
    if end_ns <= start_ns:
        raise LookupError("the range is empty")
    segments = [s for s in _segments(root, camera, start_ns, end_ns, include_open=True) if (root / s.path).is_file()]
    if not segments:
        raise LookupError(f"nothing recorded for {camera!r} in that range")
    options = MP4_OPTIONS if out.suffix == ".mp4" else None
    try:
        try:
            write_clip(segments, root, start_ns, end_ns, out, options)
        except av.error.FFmpegError:
            closed = [s for s in segments if s.closed]
            if not closed or len(closed) == len(segments):
                raise
            # the file still being written ended mid-cluster as it was read: the closed ones only
            write_clip(closed, root, start_ns, end_ns, out, options)
    except BaseException:
        _unlink(out)
        raise
    return out


def kept_clip(root: Path, event_id: str) -> list[Path]:
    """The files of the clip the recorder kept for ``event_id`` (a tracked object's object_id),
    in time order; empty when none (or no index)."""
    rows = _read(root, lambda db: db.execute("SELECT path FROM kept WHERE event_id = ?", (event_id,)).fetchall(), [])
    files = [root / r[0] for r in rows if (root / r[0]).is_file()]
    return sorted(files, key=_stamp_order)


def kept_ids(root: Path) -> set[str]:
    """Every event id with a kept clip file (one query: cheap enough to run every poll)."""
    return {r[0] for r in _read(root, lambda db: db.execute("SELECT DISTINCT event_id FROM kept").fetchall(), [])}


def remux_to_mp4(sources: list[Path], out: Path) -> Path:
    """Segment files (a kept clip's, named as the ring names them) one after another in ``out``,
    packets copied, timed from each file's start in its name. ValueError for a file named otherwise."""
    if not sources:
        raise LookupError("no files to remux")
    segments = [Segment(i, "", start_of(p), None, str(p.resolve()), "", 0, 0, 0, True)
                for i, p in enumerate(sorted(sources, key=_stamp_order))]
    try:  # paths are absolute: root / path is the path
        write_clip(segments, Path("/"), segments[0].start_ns, FOREVER_NS, out,
                   MP4_OPTIONS if out.suffix == ".mp4" else None)
    except BaseException:
        _unlink(out)
        raise
    return out


def start_of(path: Path) -> int:
    """The capture time (ns, to the millisecond) a ring file's name says its first frame has."""
    m = STAMP.search(path.name)
    if m is None:
        raise ValueError(f"not a recorder segment name: {path.name}")
    dt = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=timezone.utc)
    return (int(dt.timestamp()) * 1000 + dt.microsecond // 1000) * 1_000_000


# -- cached clips for the HTTP API ----------------------------------------------------------------

class ClipCache:
    """MP4s by key in ``dir``, at most about ``max_bytes`` of them, the oldest made going first.
    Thread-safe; one maker per key at a time."""

    def __init__(self, dir: Path, max_bytes: int = 1 << 30) -> None:
        self.dir, self.max_bytes = Path(dir), max_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._making: dict[str, threading.Lock] = {}
        for stale in self.dir.glob(".*.tmp.mp4"):  # a maker killed mid-write in an earlier run
            _unlink(stale)

    def path(self, key: str) -> Path:
        return self.dir / (hashlib.sha256(key.encode()).hexdigest()[:40] + ".mp4")

    def get(self, key: str, make: Callable[[Path], object]) -> Path:
        """The MP4 for ``key``: the one made before, else ``make(tmp)`` writes it (its errors
        raised, nothing left behind)."""
        path = self.path(key)
        if path.is_file():
            return path
        with self._lock:
            gate = self._making.setdefault(key, threading.Lock())
        with gate:
            try:
                if path.is_file():  # made while this one waited
                    return path
                tmp = self.dir / f".{path.stem}.{uuid.uuid4().hex}.tmp.mp4"
                try:
                    make(tmp)
                    os.replace(tmp, path)
                finally:
                    _unlink(tmp)
            finally:
                with self._lock:
                    self._making.pop(key, None)
        self.evict(keep=path)
        return path

    def evict(self, keep: Path | None = None) -> int:
        """Delete the oldest files while all of them are over ``max_bytes``; returns how many."""
        files = []
        for p in self.dir.glob("*.mp4"):
            if p.name.startswith("."):
                continue
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            files.append((st.st_mtime_ns, p, st.st_size))
        files.sort()
        total, removed = sum(size for _, _, size in files), 0
        for _, p, size in files:
            if total <= self.max_bytes:
                break
            if p == keep:
                continue
            _unlink(p)
            total -= size
            removed += 1
        return removed


def event_clip(root: Path, key: str, cache: ClipCache) -> Path:
    """The kept clip of an event (``key``: events_index.clip_key) as a cached MP4; LookupError if none.
    The key names its files too: an object's clip that gained files is made again."""
    sources = kept_clip(root, key)
    if not sources:
        raise LookupError(f"no clip kept for {key!r}")
    signature = ",".join(f"{p.name}:{_size(p)}" for p in sources)
    return cache.get(f"event\0{key}\0{signature}", lambda tmp: remux_to_mp4(sources, tmp))


def range_clip(root: Path, camera: str, start: float, end: float, cache: ClipCache) -> Path:
    """:func:`export_range` as a cached MP4; the key names the segments and their sizes, so a
    range whose recording grew (the open segment) is made again."""
    segments = _segments(root, camera, int(start * 1e9), int(end * 1e9), include_open=True)
    if not segments:
        raise LookupError(f"nothing recorded for {camera!r} in that range")
    signature = ",".join(f"{s.id}:{s.closed}:{_size(root / s.path)}" for s in segments)
    return cache.get(f"range\0{camera}\0{start!r}\0{end!r}\0{signature}",
                     lambda tmp: export_range(root, camera, start, end, tmp))


def usage(root: Path) -> dict[str, int]:
    """For the system page: the ring's bytes and segments, and the clips kept, as the index says."""
    def count(db) -> dict[str, int]:
        n, size = db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM segments").fetchone()
        kept = db.execute("SELECT COUNT(*) FROM keeps").fetchone()[0]
        return {"segments": n, "ring_bytes": size, "kept_clips": kept}
    return _read(root, count, {"segments": 0, "ring_bytes": 0, "kept_clips": 0})


# -- the index ------------------------------------------------------------------------------------

def _read(root: Path, fn, empty):
    """``fn(db)`` on the index opened read-only; ``empty`` when there is none (yet)."""
    try:
        index = Index(root, readonly=True)
    except (FileNotFoundError, sqlite3.OperationalError):
        return empty
    try:
        return fn(index.db)
    except sqlite3.OperationalError:  # the recorder has not made its tables yet
        return empty
    finally:
        index.close()


def _segments(root: Path, camera: str | None, from_ns: int | None, to_ns: int | None,
              include_open: bool) -> list[Segment]:
    """Segments with any part in [from_ns, to_ns), by camera then start; an open one (end_ns
    None) reaches as far as the recorder may have written."""
    where, params = [], []
    if camera is not None:
        where.append("camera = ?")
        params.append(camera)
    if to_ns is not None:
        where.append("start_ns < ?")
        params.append(to_ns)
    if from_ns is not None:
        where.append("(end_ns IS NULL OR end_ns > ?)")
        params.append(from_ns)
    if not include_open:
        where.append("closed = 1")
    sql = ("SELECT id, camera, start_ns, end_ns, path, enc, bytes, frames, gaps, closed FROM segments "
           + (f"WHERE {' AND '.join(where)} " if where else "") + "ORDER BY camera, start_ns")
    rows = _read(root, lambda db: db.execute(sql, params).fetchall(), [])
    return [Segment(*r[:9], bool(r[9])) for r in rows]


def _open_end(root: Path, seg: Segment) -> int:
    """Where an open segment ends: past its newest frame on disk by the mean frame interval (as
    the recorder's recovery reckons it), or its start when nothing can be read yet. Remembered
    per file size, so a file that has not grown is not read again."""
    path = root / seg.path
    try:
        st = path.stat()
    except OSError:
        return seg.start_ns
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _open_ends_lock:
        if key in _open_ends:
            return _open_ends[key]
    try:
        frames, last_ms = _probe(path)
    except OSError:
        return seg.start_ns
    step_ms = last_ms / max(1, frames - 1)
    end_ns = seg.start_ns + int((last_ms + step_ms) * 1e6) if frames else seg.start_ns
    with _open_ends_lock:
        if len(_open_ends) > 1024:
            _open_ends.clear()
        _open_ends[key] = end_ns
    return end_ns


def _stamp_order(path: Path) -> tuple[str, int]:
    m = STAMP.search(path.name)
    return (m.group(1), int(m.group(2) or 0)) if m else (path.name, 0)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
