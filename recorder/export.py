"""The recorder's reads that answer a viewer: recorded ranges, a range or a kept clip as MP4.

Reads the recorder's ``DIR`` through recorder.catalog (``index.db`` read-only, the ring's
Matroska segments, ``kept/`` event clips; recorder.segment: their names) and never writes there.
Clips are the recorder's packets copied into MP4 (recorder.clip.write_clip: the same cut as
``camwire clip``, no re-encoding), with the index at the front (``faststart``) so a browser
plays one as it loads. Used where the recordings are: by the console reading a recorder on its
own host (web.recordings) and by the recorder answering another host (recorder.served).

An event's kept clip is cut to the window the recorder kept it for (an object's
``[first seen - pre, last seen + post]``, another event's ``[t - pre, t + post]``), from the key
frame at or before its start: it plays from just before the object, not from the start of the
first whole segment. Files the index has no window for play whole.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

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


def kept_signature(kept: catalog.KeptClip) -> str:
    """What a kept clip's MP4 is made of (its window, its files and their sizes): the same
    signature, the same MP4; an object's clip stretched by a later update signs anew."""
    window = "whole" if kept.window is None else "{}-{}".format(*kept.window)
    return ",".join([window, *(f"{p.name}:{_size(p)}" for p in kept.files)])


def range_signature(root: Path, camera: str, start: float, end: float) -> tuple[list[Segment], str]:
    """The segments of ``camera`` in [start, end) and what an export of them is made of (each
    one's id, whether closed, its size): a range whose recording grew signs anew.
    LookupError when nothing is recorded there."""
    segments = catalog.segments(root, camera, int(start * 1e9), int(end * 1e9))
    if not segments:
        raise LookupError(f"nothing recorded for {camera!r} in that range")
    return segments, ",".join(f"{s.id}:{s.closed}:{_size(root / s.path)}" for s in segments)


def estimated_bytes(root: Path, segments: list[Segment], start: float, end: float) -> int:
    """About how large an export of [start, end) from ``segments`` comes out: each file's size
    by the share of its time inside the range (an open one counted whole)."""
    total = 0.0
    for s in segments:
        size = _size(root / s.path)
        if s.end_ns is None or s.end_ns <= s.start_ns:
            total += size
            continue
        inside = min(s.end_ns, end * 1e9) - max(s.start_ns, start * 1e9)
        total += size * max(0.0, inside) / (s.end_ns - s.start_ns)
    return int(total)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def usage(root: Path) -> dict[str, int]:
    """For the system page: the ring's bytes and segments, and the clips kept, as the index says."""
    return asdict(catalog.totals(root))


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
