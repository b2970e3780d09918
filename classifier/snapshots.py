"""Snapshots: ``DIR/snapshots/<camera>/<UTC date>/<event id>.jpg`` with the event's JSON beside it.

Only bytes that decode as a JPEG are written (common.pixels.decode_jpeg); the rest are counted
(``snapshots/not_jpeg``). The event id is unique forever (common.ids), and a file is created
exclusively, so no snapshot ever overwrites another, across restarts too.

Bounded on disk: snapshots older than ``retain_s`` and, past ``max_bytes`` in all, the oldest
ones are deleted (pairs of .jpg and .json, oldest first). Under ``min_free`` of the volume free,
none is written (``snapshots/low_space``): events still go out, without a snapshot. A write that
fails (a full disk) is counted under ``write_errors/snapshots`` and loses nothing else.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

import msgspec

from classifier.disk import WriteErrors, free_fraction
from common import wire
from common.counters import Counters
from common.paths import safe_name, utc_day
from common.pixels import decode_jpeg


class SnapshotStore:
    def __init__(self, root: Path, counters: Counters, errors: WriteErrors, retain_s: float = 7 * 86400.0,
                 max_bytes: int = 1 << 30, min_free: float = 0.05) -> None:
        self.root, self.counters, self.errors = root, counters, errors
        self.retain_s, self.max_bytes, self.min_free = retain_s, max_bytes, min_free
        self._kept: deque[tuple[float, Path, int]] = deque()  # (mtime, .jpg path, bytes of the pair), oldest first
        self.bytes = 0
        self._scan()

    def _scan(self) -> None:
        """What earlier runs left, so the bounds hold across restarts."""
        found = []
        for jpg in self.root.glob("*/*/*.jpg"):
            try:
                st = jpg.stat()
            except OSError:
                continue
            found.append((st.st_mtime, jpg, st.st_size + _size(jpg.with_suffix(".json"))))
        found.sort()
        self._kept.extend(found)
        self.bytes = sum(n for _, _, n in found)

    def save(self, event: wire.Event, jpeg: bytes, size: tuple[int, int]) -> str | None:
        """Write ``jpeg`` and the event (with its snapshot path); the path, or None when not written.
        ``size``: the frame's (width, height), which the JPEG must declare and decode to."""
        image = decode_jpeg(jpeg, size=size)
        if image is None or image.shape[1::-1] != size:
            self.counters.add("snapshots", "not_jpeg")
            return None
        free = free_fraction(self.root if self.root.exists() else self.root.parent)
        if free is not None and free < self.min_free:
            self.counters.add("snapshots", "low_space")
            return None
        folder = self.root / safe_name(event.camera) / utc_day(event.ts)
        path = folder / f"{safe_name(event.id)}.jpg"
        meta = path.with_suffix(".json")
        body = msgspec.json.format(msgspec.json.encode(msgspec.structs.replace(event, snapshot=str(path))), indent=1)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(path, "xb") as f:  # exclusive: never over another snapshot
                f.write(jpeg)
            with open(meta, "xb") as f:
                f.write(body)
        except FileExistsError:
            self.counters.add("snapshots", "exists")  # not written: the one there stays
            return None
        except OSError as exc:
            for p in (path, meta):
                try:
                    p.unlink()
                except OSError:
                    pass
            self.errors("snapshots", exc)
            return None
        size = len(jpeg) + len(body)
        self._kept.append((time.time(), path, size))
        self.bytes += size
        self.counters.add("snapshots", "written")
        if self.bytes > self.max_bytes:
            self.prune()
        return str(path)

    def prune(self, now: float | None = None) -> int:
        """Delete the oldest snapshots while they are past ``retain_s`` or over ``max_bytes``."""
        now = time.time() if now is None else now
        removed = 0
        while self._kept and (self.bytes > self.max_bytes or now - self._kept[0][0] > self.retain_s):
            _, path, size = self._kept.popleft()
            self.bytes -= size
            for p in (path, path.with_suffix(".json")):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    self.errors("snapshots", exc)
            for folder in (path.parent, path.parent.parent):  # a day, then a camera, left empty
                try:
                    folder.rmdir()
                except OSError:
                    break
            removed += 1
        if removed:
            self.counters.add("snapshots", "deleted", n=removed)
        return removed


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
