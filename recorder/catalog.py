"""What another daemon (the web console) reads of a recorder's DIR, never writing there.

The index (recorder.index: ``index.db``) opened read-only for each read: the segments in a time
window, an event's kept clip (:func:`kept_clip`: its files and the window the keeper kept them
for, which a clip made of them is cut to), the totals. An index not there yet, or without its
tables yet, or locked, reads as nothing recorded. A segment still being written has no end in
the index: :func:`open_end` reads how far its file goes, as the recorder's recovery does
(recorder.recovery). File names are the ring's (recorder.segment: ``start_of``, ``name_order``).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class KeptClip:
    """An event's kept clip: its files on disk in time order, and the window the keeper kept them
    for (from, to: capture times, ns); None where the index has none for them (the files then
    play whole)."""

    files: list[Path]
    window: tuple[int, int] | None


def kept_files(root: Path, event_id: str) -> list[Path]:
    """The files of the clip the recorder kept for ``event_id`` (a tracked object's object_id)
    that are on disk, in time order; empty when none (or no index)."""
    return kept_clip(root, event_id).files


def kept_clip(root: Path, event_id: str) -> KeptClip:
    """The clip the recorder kept for ``event_id``, files and window read in one go, so the window
    is the one those files were linked for (an object's grows with its updates)."""
    paths, window = _read(root, lambda index: _kept(index, event_id), ([], None))
    files = sorted((f for f in (root / p for p in paths) if f.is_file()), key=name_order)
    return KeptClip(files, window)


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


def _kept(index: Index, event_id: str) -> tuple[list[str], tuple[int, int] | None]:
    """The kept paths and the window from one snapshot of the index (one read transaction)."""
    index.db.execute("BEGIN")
    try:
        return index.kept_paths(event_id), _window(index, event_id)
    finally:
        index.db.rollback()


def _window(index: Index, event_id: str) -> tuple[int, int] | None:
    """The keeps row's window: ``[first seen - pre, last seen + post]`` for an object,
    ``[t - pre, t + post]`` for any other event (recorder.keep)."""
    row = index.db.execute("SELECT from_ns, to_ns FROM keeps WHERE event_id = ?", (event_id,)).fetchone()
    return (row[0], row[1]) if row else None


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
