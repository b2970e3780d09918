"""Snapshots: ``DIR/snapshots/<camera>/<UTC date>/<event id>.jpg`` with the event's JSON beside it.

An event names its snapshot relative to the data dir (``snapshots/<camera>/<date>/<id>.jpg``,
the store's ``base``), never as a host path: the JSON line, PUB, MQTT and the webhook say the
same wherever the folder is mounted or moved.

A snapshot is made from the frame's pixels as a worker sent them (common.pixels.Pixels, an LZ4
block): the JPEG is encoded here, only for the frames the sink keeps (most results' pixels are
never encoded), counted ``snapshot_pixels/encoded`` and timed in
``camwire_sink_snapshot_encode_seconds{what="snapshot"}``. Pixels whose LZ4 does not decode to
the size they declare are counted ``malformed/bad_pixels`` and no snapshot is written.

A tracked object's snapshot (sink.tracking) is its best frame with its box and label drawn
(``<id>.jpg``), the frame as it came beside it (``<id>.clean.jpg``), and a small thumbnail of
the object in its surroundings (``<id>.thumb.jpg``, at most THUMB pixels a side): the box grown
by half its size on each side (more above, where a head is), widened or heightened to 16:9 (the
console shows thumbnails so, cropping nothing), and moved, not shrunk, to stay inside the frame;
only a crop bigger than the frame is shrunk, and never past the box, which is always whole.
The box is in the source's pixels; a frame resized for detection (a camera's ``detect_size``)
has it drawn, and cropped, scaled to the pixels, which are the resized frame's.

A JPEG made elsewhere may be saved too; only bytes that decode as a JPEG of the frame's size are
written (common.pixels.decode_jpeg), the rest are counted (``snapshots/not_jpeg``). The event id
is unique forever (common.ids), and a file is created exclusively, so no snapshot ever
overwrites another, across restarts too.

Bounded on disk: snapshots older than ``retain_s`` and, past ``max_bytes`` in all, the oldest
ones are deleted (pairs of .jpg and .json, oldest first). Under ``min_free`` of the volume free,
none is written (``snapshots/low_space``): events still go out, without a snapshot. A write that
fails (a full disk) is counted under ``write_errors/snapshots`` and loses nothing else.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from pathlib import Path

import msgspec
import numpy as np

from camwire.sink.store.disk import WriteErrors, free_fraction
from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.metrics import SNAPSHOT_ENCODE_SECONDS
from camwire.common.paths import safe_name, utc_day
from camwire.common.pixels import Pixels, decode_jpeg, encode_jpeg

THUMB = 160  # a thumbnail's longest side, in pixels
# a thumbnail's context, in box widths (sides) and heights (above, below): a detector's box often
# cuts a person at the hairline, and a person's head and what is beside them say who and where
SIDE, ABOVE, BELOW = 0.5, 0.75, 0.5
ASPECT = 16 / 9  # the console's thumbnails (object-fit: cover): a crop of this shape shows whole
MIN_WIDTH = 96  # image pixels a crop spans at least (the console's thumbnail width): a far-off object in its place
COLOUR = (0, 255, 0)  # BGR: the box drawn on an object's snapshot
SUFFIXES = (".jpg", ".json", ".clean.jpg", ".thumb.jpg")  # one snapshot's files

Box = tuple[float, ...]


class SnapshotStore:
    def __init__(self, root: Path, counters: Counters, errors: WriteErrors, retain_s: float = 7 * 86400.0,
                 max_bytes: int = 1 << 30, min_free: float = 0.05) -> None:
        self.root, self.counters, self.errors = root, counters, errors
        self.base = root.parent  # what an event's snapshot path is relative to: the sink's --data-dir
        self.retain_s, self.max_bytes, self.min_free = retain_s, max_bytes, min_free
        self._kept: deque[tuple[float, Path, int]] = deque()  # (mtime, .jpg path, bytes of the pair), oldest first
        self.bytes = 0
        self._scan()

    def _scan(self) -> None:
        """What earlier runs left, so the bounds hold across restarts."""
        found = []
        for meta in self.root.glob("*/*/*.json"):
            jpg = meta.with_suffix(".jpg")
            try:
                st = jpg.stat()
            except OSError:
                continue
            found.append((st.st_mtime, jpg, sum(_size(p) for p in _files(jpg))))
        found.sort()
        self._kept.extend(found)
        self.bytes = sum(n for _, _, n in found)

    def save(self, event: wire.Event, picture: Pixels | bytes, size: tuple[int, int], box: Box | None = None,
             label: str | None = None) -> str | None:
        """Write the event's snapshot and the event (with its snapshot path) beside it; the path
        (relative to ``base``), or None when not written.
        ``picture``: the frame's pixels as a result brought them, encoded here; or a JPEG already
        made, which must declare and decode to ``size``. ``size``: the frame's (width, height),
        the source's, which ``box`` is in. With a ``box``, the snapshot has it drawn (and
        ``label`` beside it), with a clean copy and a thumbnail."""
        free = free_fraction(self.root if self.root.exists() else self.root.parent)
        if free is not None and free < self.min_free:  # before any decoding: nothing is spent on it
            self.counters.add("snapshots", "low_space")
            return None
        if isinstance(picture, Pixels):
            files = self._encoded(picture, size, box, label)
        else:
            files = self._as_sent(picture, size, box, label)
        return None if files is None else self._write(event, files)

    def _encoded(self, pixels: Pixels, size: tuple[int, int], box: Box | None,
                 label: str | None) -> dict[str, bytes] | None:
        """A snapshot's JPEGs from a result's pixels, timed: the one encoding the sink does for a
        snapshot, which the worker no longer does for every result."""
        started = time.perf_counter()
        try:
            image = pixels.decode()
        except wire.MalformedMessage as exc:
            self.counters.add("malformed", exc.reason)
            return None
        clean = encode_jpeg(image)
        files = {".jpg": clean} if box is None else self._boxed(image, clean, _scaled(box, size, image), label)
        SNAPSHOT_ENCODE_SECONDS.labels("snapshot").observe(time.perf_counter() - started)
        self.counters.add("snapshot_pixels", "encoded")
        return files

    def _as_sent(self, jpeg: bytes, size: tuple[int, int], box: Box | None,
                 label: str | None) -> dict[str, bytes] | None:
        """A snapshot's JPEGs from a JPEG made elsewhere, which must be one of the frame's size."""
        image = decode_jpeg(jpeg, size=size)
        if image is None or image.shape[1::-1] != size:
            self.counters.add("snapshots", "not_jpeg")
            return None
        return {".jpg": jpeg} if box is None else self._boxed(image, jpeg, box, label)

    @staticmethod
    def _boxed(image: np.ndarray, clean: bytes, box: Box, label: str | None) -> dict[str, bytes]:
        """An object's snapshot: the box drawn, the frame as it came, the thumbnail (``box`` in the image's pixels)."""
        return {".jpg": _drawn(image, box, label), ".clean.jpg": clean, ".thumb.jpg": _thumbnail(image, box)}

    def _write(self, event: wire.Event, files: dict[str, bytes]) -> str | None:
        """``files`` (suffix -> bytes) and the event's JSON, each created exclusively; the path named."""
        folder = self.root / safe_name(event.camera) / utc_day(event.ts)
        path = folder / f"{safe_name(event.id)}.jpg"
        named = str(path.relative_to(self.base))
        body = msgspec.json.format(msgspec.json.encode(msgspec.structs.replace(event, snapshot=named)), indent=1)
        files[".json"] = body
        written: list[Path] = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for suffix, data in files.items():
                target = _with(path, suffix)
                with open(target, "xb") as f:  # exclusive: never over another snapshot
                    written.append(target)
                    f.write(data)
        except FileExistsError:
            for p in written:
                p.unlink(missing_ok=True)
            self.counters.add("snapshots", "exists")  # not written: the one there stays
            return None
        except OSError as exc:
            for p in written:
                try:
                    p.unlink()
                except OSError:
                    pass
            self.errors("snapshots", exc)
            return None
        size = sum(len(data) for data in files.values())
        self._kept.append((time.time(), path, size))
        self.bytes += size
        self.counters.add("snapshots", "written")
        if self.bytes > self.max_bytes:
            self.prune()
        return named

    def prune(self, now: float | None = None) -> int:
        """Delete the oldest snapshots while they are past ``retain_s`` or over ``max_bytes``."""
        now = time.time() if now is None else now
        removed = 0
        while self._kept and (self.bytes > self.max_bytes or now - self._kept[0][0] > self.retain_s):
            _, path, size = self._kept.popleft()
            self.bytes -= size
            for p in _files(path):
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


def written_for(event: wire.Event) -> bool:
    """Whether ``event.snapshot`` was written for this event, not an earlier one of its object
    (a tracked object's later events name its best snapshot so far): a snapshot is named after
    the event it was saved with."""
    return event.snapshot is not None and Path(event.snapshot).name == f"{safe_name(event.id)}.jpg"


def _with(jpg: Path, suffix: str) -> Path:
    """``X.jpg`` -> ``X<suffix>`` (an event id has dots of its own: not Path.with_suffix)."""
    return jpg.with_name(jpg.name[:-len(".jpg")] + suffix)


def _files(jpg: Path) -> list[Path]:
    return [_with(jpg, suffix) for suffix in SUFFIXES]


def _scaled(box: Box, size: tuple[int, int], image: np.ndarray) -> Box:
    """``box``, in the source's pixels (``size``), in the image's: smaller when the extractor
    resized the frame for detection (a camera's detect_size)."""
    height, width = image.shape[:2]
    if (width, height) == tuple(size) or not all(size):
        return box
    sx, sy = width / size[0], height / size[1]
    x1, y1, x2, y2 = box
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def _drawn(image, box: Box, label: str | None) -> bytes:
    """The frame with the box drawn, lines thick enough to see on a big frame."""
    import cv2  # as common.pixels: loaded only where a picture is touched

    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)  # a grey frame: a green box
    h, w = out.shape[:2]
    thick = max(2, round(min(w, h) / 200))
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(out, (x1, y1), (x2, y2), COLOUR, thick)
    if label:
        scale = max(0.4, min(w, h) / 720)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - thick - 2 if y1 - thick - 2 - th >= 0 else min(h - 1, y2 + thick + th + 2)  # above, else below
        cv2.putText(out, label, (max(0, x1), ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, COLOUR, 1,
                    cv2.LINE_AA)
    return encode_jpeg(out, quality=90)


def _thumbnail(image: np.ndarray, box: Box) -> bytes:
    """The object in its surroundings (:func:`thumb_crop`), scaled to at most THUMB pixels a side."""
    import cv2

    h, w = image.shape[:2]
    left, top, right, bottom = thumb_crop(box, (w, h))
    crop = image[top:bottom, left:right]
    scale = min(1.0, THUMB / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    return encode_jpeg(crop)


def thumb_crop(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) of an image of ``size`` (width, height) a thumbnail shows:
    the box (in the image's pixels) grown by SIDE, ABOVE and BELOW (MIN_WIDTH at least), at
    ASPECT, inside the image and holding the whole box. What gives way when not all can hold: first the margin (a crop
    bigger than the image is shrunk to it), then the aspect (a box too tall or wide for any crop
    of ASPECT inside the image); never the box."""
    w, h = size
    x1, y1, x2, y2 = _inside(box, size)
    bw, bh = x2 - x1, y2 - y1
    cw, ch = _at_aspect(max(MIN_WIDTH, bw * (1 + 2 * SIDE)), bh * (1 + ABOVE + BELOW))
    fit = min(1.0, w / cw, h / ch)  # the margin gives way to the image's edges, the aspect kept
    cw, ch = min(w, max(bw, round(cw * fit))), min(h, max(bh, round(ch * fit)))
    # centred on the grown box (a little above the box's centre), then moved into the image
    # without uncovering any of the box: a range that is never empty, as the box fits
    left = _clamp(round((x1 + x2 - cw) / 2), max(0, x2 - cw), min(x1, w - cw))
    top = _clamp(round(y1 - bh * ABOVE + (bh * (1 + ABOVE + BELOW) - ch) / 2), max(0, y2 - ch), min(y1, h - ch))
    return left, top, left + cw, top + ch


def _inside(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box as whole pixels covering it, within the image; at least one pixel each way."""
    w, h = size
    x1, y1 = (min(max(0, math.floor(v)), edge - 1) for v, edge in ((box[0], w), (box[1], h)))
    x2, y2 = (min(max(lo + 1, math.ceil(v)), edge) for v, lo, edge in ((box[2], x1, w), (box[3], y1, h)))
    return x1, y1, x2, y2


def _at_aspect(width: float, height: float) -> tuple[float, float]:
    """The smallest ASPECT rectangle holding ``width`` x ``height`` (one side grown, never shrunk)."""
    return max(width, height * ASPECT), max(height, width / ASPECT)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
