"""What another daemon (the web console) reads of a recorder's DIR, never writing there.

The index (recorder.index: ``index.db``) opened read-only for each read: the segments in a time
window, the files of an event's kept clip, the totals. An index not there yet, or without its
tables yet, or locked, reads as nothing recorded. A segment still being written has no end in
the index: :func:`open_end` reads how far its file goes, as the recorder's recovery does
(recorder.recovery). File names are the ring's (recorder.segment: ``start_of``, ``name_order``).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Callable, TypeVar

from camwire.recorder.index import Index, Segment, Totals
from camwire.recorder.recovery import end_of, probe
from camwire.recorder.segment import name_order

T = TypeVar("T")

_open_ends: dict[tuple[str, int, int], int] = {}  # (path, size, mtime_ns) -> end_ns of an open segment
_open_ends_lock = threading.Lock()


def segments(root: Path, camera: str | None, from_ns: int | None, to_ns: int | None) -> list[Segment]:
    """Segments, open ones too, with any part in [from_ns, to_ns) (None: unbounded), of
    ``camera`` or of all, by camera then start (Index.in_window); none without an index."""
    return _read(root, lambda index: index.in_window(camera, from_ns, to_ns), [])


def kept_files(root: Path, event_id: str) -> list[Path]:
    """The files of the clip the recorder kept for ``event_id`` (a tracked object's object_id)
    that are on disk, in time order; empty when none (or no index)."""
    files = [root / p for p in _read(root, lambda index: index.kept_paths(event_id), [])]
    return sorted((f for f in files if f.is_file()), key=name_order)


def kept_ids(root: Path) -> set[str]:
    """Every event id with a kept clip file (one query: cheap enough to run every poll)."""
    return _read(root, Index.kept_event_ids, set())


def totals(root: Path) -> Totals:
    """The ring's segments and bytes, and the clips kept, as the index says (zeros without one)."""
    return _read(root, Index.totals, Totals(0, 0, 0))


def open_end(root: Path, seg: Segment) -> int:
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
        frames, last_ms = probe(path)
    except OSError:
        return seg.start_ns
    end_ns = end_of(seg.start_ns, frames, last_ms)
    with _open_ends_lock:
        if len(_open_ends) > 1024:
            _open_ends.clear()
        _open_ends[key] = end_ns
    return end_ns


def _read(root: Path, fn: Callable[[Index], T], empty: T) -> T:
    """``fn(index)`` on the index opened read-only; ``empty`` when there is none (yet)."""
    try:
        index = Index(root, readonly=True)
    except (FileNotFoundError, sqlite3.OperationalError):
        return empty
    try:
        return fn(index)
    except sqlite3.OperationalError:  # the recorder has not made its tables yet
        return empty
    finally:
        index.close()
