"""What the recorder has on disk, for the web console: recorded ranges and MP4 clips.

Reads the recorder's ``DIR`` through the recorder's read API (recorder.catalog: ``index.db``
read-only, the ring's Matroska segments, ``kept/`` event clips; recorder.segment: their names)
and never writes there. Clips are the recorder's packets copied into MP4
(recorder.clip.write_clip: the same cut as ``camwire clip``, no re-encoding), with the index at
the front (``faststart``) so a browser plays one as it loads. The recorder's encoded
segments are H.264 (libx264); passed-through camera packets are whatever the camera sends.

An event's kept clip is cut to the window the recorder kept it for (an object's
``[first seen - pre, last seen + post]``, another event's ``[t - pre, t + post]``), from the key
frame at or before its start: it plays from just before the object, not from the start of the
first whole segment. Files the index has no window for play whole.

:class:`ClipCache` keeps the MP4s made, by key, within a byte budget: a file is written under a
temporary name and renamed, so a file half written is never served.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import av

from camwire.recorder import catalog
from camwire.recorder.clip import write_clip
from camwire.recorder.index import Segment
from camwire.recorder.segment import name_order, start_of

TOUCH_S = 1.5  # segments less than this apart are one range (a cut, a dropped frame: no gap to show)
MP4_OPTIONS = {"movflags": "+faststart"}
FOREVER_NS = 1 << 62


def ranges(root: Path, camera: str | None, since: float | None,
           until: float | None) -> dict[str, list[tuple[float, float]]]:
    """Per camera, the recorded ranges that reach into [since, until] (seconds since the epoch),
    oldest first, cut to that window; segments that touch make one range. Open segments count up
    to their newest frame on disk. No index yet: nothing recorded."""
    since_ns = None if since is None else int(since * 1e9)
    until_ns = None if until is None else int(until * 1e9)
    out: dict[str, list[tuple[float, float]]] = {}
    for seg in catalog.segments(root, camera, since_ns, until_ns):
        end_ns = seg.end_ns if seg.end_ns is not None else catalog.open_end(root, seg)
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
    segments = [s for s in catalog.segments(root, camera, start_ns, end_ns) if (root / s.path).is_file()]
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


def remux_to_mp4(sources: list[Path], out: Path, window: tuple[int, int] | None = None) -> Path:
    """Segment files (a kept clip's, named as the ring names them) one after another in ``out``,
    packets copied, timed from each file's start in its name: cut to ``window`` (capture times,
    ns) from the key frame at or before its start, or whole without one. ValueError for a file
    named otherwise; LookupError when no frame falls in the window."""
    if not sources:
        raise LookupError("no files to remux")
    segments = [Segment(i, "", start_of(p), None, str(p.resolve()), "", 0, 0, 0, True)
                for i, p in enumerate(sorted(sources, key=name_order))]
    start_ns, end_ns = window or (segments[0].start_ns, FOREVER_NS)
    try:  # paths are absolute: root / path is the path
        write_clip(segments, Path("/"), start_ns, end_ns, out, MP4_OPTIONS if out.suffix == ".mp4" else None)
    except BaseException:
        _unlink(out)
        raise
    return out


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
    """The kept clip of an event (``key``: events_index.clip_key) as a cached MP4 cut to its kept
    window; LookupError if none. The cache key names the window and the files: an object's clip
    stretched by a later update is made again, even where the longer window needs no new file."""
    kept = catalog.kept_clip(root, key)
    if not kept.files:
        raise LookupError(f"no clip kept for {key!r}")
    window = "whole" if kept.window is None else "{}-{}".format(*kept.window)
    signature = ",".join(f"{p.name}:{_size(p)}" for p in kept.files)
    return cache.get(f"event\0{key}\0{window}\0{signature}",
                     lambda tmp: remux_to_mp4(kept.files, tmp, kept.window))


def range_clip(root: Path, camera: str, start: float, end: float, cache: ClipCache) -> Path:
    """:func:`export_range` as a cached MP4; the key names the segments and their sizes, so a
    range whose recording grew (the open segment) is made again."""
    segments = catalog.segments(root, camera, int(start * 1e9), int(end * 1e9))
    if not segments:
        raise LookupError(f"nothing recorded for {camera!r} in that range")
    signature = ",".join(f"{s.id}:{s.closed}:{_size(root / s.path)}" for s in segments)
    return cache.get(f"range\0{camera}\0{start!r}\0{end!r}\0{signature}",
                     lambda tmp: export_range(root, camera, start, end, tmp))


def usage(root: Path) -> dict[str, int]:
    """For the system page: the ring's bytes and segments, and the clips kept, as the index says."""
    return asdict(catalog.totals(root))


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
