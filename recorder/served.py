"""What a recorder answers other hosts over ``--serve`` (common.serve): its recordings, read from
its own ``DIR`` as a console on this host would read them (recorder.export, recorder.previews,
recorder.catalog), so a console anywhere shows them and no host needs another's disk.

Ops (args -> body [, blobs]):

- ``ranges`` {camera?, since?, until?} -> {camera: [[start, end], ...]}: recorded ranges
  (seconds since the epoch), touching segments joined (recorder.export.ranges).
- ``kept`` {} -> [event id, ...]: every event with a kept clip file.
- ``event_clip`` {key, have?} -> {signature}, blob: the kept clip of an event (its object's id
  or its own) as MP4, cut to its kept window and remuxed here, where the files are (no
  re-encoding); no blob when ``have`` is the clip's signature now (the asker's copy is current).
- ``export`` {camera, start, end, have?} -> {signature}, blob: that range (at most an hour) as
  MP4, from the key frame before ``start``; no blob when ``have`` is its signature now. A range
  whose files come to more than ``MP4_MAX_BYTES`` is refused before anything is written.
- ``preview`` {camera, ts} -> blob: the timeline's still at ``ts`` (JPEG).
- ``usage`` {} -> {segments, bytes, kept}: the ring and kept clips, as the index says.

An MP4 is written under ``DIR/.served`` (the recorder's own volume, removed at once after it is
read; a file left by a kill is removed at the next start) and sent whole: at most
``MP4_MAX_BYTES``, past which the asker is told to export a shorter range.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from camwire.common.serve import Blobs, Op
from camwire.recorder import catalog, export, previews

MP4_MAX_BYTES = 512 << 20
MAX_EXPORT_S = 3600.0  # as the console's own limit on a range clip (web.api MAX_CLIP_S)
SERVED = ".served"


def ops(root: Path) -> dict[str, Op]:
    """The recorder's ops over its ``DIR`` ``root``."""
    scratch = root / SERVED
    shutil.rmtree(scratch, ignore_errors=True)  # what a killed recorder left half made

    def ranges(args: dict[str, Any]) -> dict[str, list[list[float]]]:
        found = export.ranges(root, _text(args.get("camera")), _number(args.get("since")), _number(args.get("until")))
        return {camera: [list(span) for span in spans] for camera, spans in found.items()}

    def kept(_args: dict[str, Any]) -> list[str]:
        return sorted(catalog.kept_ids(root))

    def event_clip(args: dict[str, Any]) -> tuple[dict[str, str], Blobs]:
        key = _required(args, "key")
        kept = catalog.kept_clip(root, key)
        if not kept.files:
            raise LookupError(f"no clip kept for {key!r}")
        signature = export.kept_signature(kept)
        if args.get("have") == signature:  # the asker holds this one already
            return {"signature": signature}, []
        return {"signature": signature}, [_made(scratch, lambda out: export.remux_to_mp4(kept.files, out,
                                                                                        kept.window))]

    def export_range(args: dict[str, Any]) -> tuple[dict[str, str], Blobs]:
        camera, start, end = _required(args, "camera"), _required_number(args, "start"), _required_number(args, "end")
        if not 0 < end - start <= MAX_EXPORT_S:
            raise ValueError(f"end after start, at most {MAX_EXPORT_S:.0f} s apart")
        segments, signature = export.range_signature(root, camera, start, end)
        if args.get("have") == signature:
            return {"signature": signature}, []
        if export.estimated_bytes(root, segments, start, end) > MP4_MAX_BYTES:  # refused before a byte is written
            raise LookupError(f"that range is over {MP4_MAX_BYTES >> 20} MB: export a shorter one, or cut it on the "
                              "recorder's host (camwire clip)")
        return {"signature": signature}, [_made(scratch, lambda out: export.export_range(root, camera, start, end,
                                                                                         out))]

    def preview(args: dict[str, Any]) -> tuple[None, Blobs]:
        return None, [previews.preview_jpeg(root, _required(args, "camera"), _required_number(args, "ts"))]

    def usage(_args: dict[str, Any]) -> dict[str, int]:
        return export.usage(root)

    return {"ranges": ranges, "kept": kept, "event_clip": event_clip, "export": export_range, "preview": preview,
            "usage": usage}


def _made(scratch: Path, make: Any) -> bytes:
    """What ``make(path)`` writes, read back; the file removed either way."""
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / f"{uuid.uuid4().hex}.mp4"
    try:
        make(out)
        if out.stat().st_size > MP4_MAX_BYTES:
            raise LookupError(f"the clip is over {MP4_MAX_BYTES >> 20} MB: export a shorter range")
        return out.read_bytes()
    finally:
        out.unlink(missing_ok=True)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _required(args: dict[str, Any], name: str) -> str:
    value = _text(args.get(name))
    if value is None:
        raise ValueError(f"{name}: a name is needed")
    return value


def _required_number(args: dict[str, Any], name: str) -> float:
    value = _number(args.get(name))
    if value is None:
        raise ValueError(f"{name}: a number is needed")
    return value
