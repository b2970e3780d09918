"""MP4s for the console's browser, cached: a recorder's kept clips and ranges, made where the
recordings are (recorder.export on this host, or the bytes a recorder on another host sent,
web.remote) and kept here by key within a byte budget.

:class:`ClipCache` writes a file under a temporary name and renames it, so a file half written
is never served.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from pathlib import Path
from typing import Callable

from camwire.recorder import catalog
from camwire.recorder.export import export_range, kept_signature, range_signature, remux_to_mp4

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
    window; LookupError if none. Cached by what it is made of (recorder.export.kept_signature)."""
    kept = catalog.kept_clip(root, key)
    if not kept.files:
        raise LookupError(f"no clip kept for {key!r}")
    return cache.get(f"event\0{key}\0{kept_signature(kept)}", lambda tmp: remux_to_mp4(kept.files, tmp, kept.window))


def range_clip(root: Path, camera: str, start: float, end: float, cache: ClipCache) -> Path:
    """:func:`export_range` as a cached MP4, cached by what it is made of
    (recorder.export.range_signature: a range whose recording grew is made again)."""
    _segments, signature = range_signature(root, camera, start, end)
    return cache.get(f"range\0{camera}\0{start!r}\0{end!r}\0{signature}",
                     lambda tmp: export_range(root, camera, start, end, tmp))


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
