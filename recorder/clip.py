"""``camwire clip``: one video file for a camera and a time range, cut from the recorder's ring.

Packets are copied, never re-encoded: the clip starts at the last key frame at or before
``--start`` (so its first frame decodes) and ends before the first frame at or after ``--end``.
The segments are found in the ring's index, not by listing folders. The output container
follows the file name (``.mkv``, ``.mp4``, ...).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from contextlib import ExitStack
from pathlib import Path

import av

from recorder.index import Index, Segment
from recorder.segment import MS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", required=True, metavar="DIR", help="the recorder's --dir")
    p.add_argument("--camera", required=True)
    p.add_argument("--start", required=True, type=parse_time, metavar="TIME",
                   help="ISO 8601 (no zone means UTC) or seconds since the epoch")
    p.add_argument("--end", required=True, type=parse_time, metavar="TIME")
    p.add_argument("--out", required=True, metavar="FILE")


def parse_time(text: str) -> int:
    """A time as ns since the epoch: ``2026-11-21T05:19:00Z``, ``...+01:00``, or ``1790000000.5``."""
    try:
        return int(float(text) * 1e9)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (ISO 8601 or epoch seconds)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1e9)


def write_clip(segments: list[Segment], root: Path, start_ns: int, end_ns: int, out: Path,
               options: dict[str, str] | None = None) -> int:
    """Copy the packets of ``segments`` for [start, end) into ``out``; returns packets written.
    ``options``: the muxer's (``{"movflags": "+faststart"}`` for an MP4 a browser plays as it loads).

    Matroska keeps presentation times only, so decode times are rebuilt: with the clip's
    presentation times sorted, ``dts[i] = sorted_pts[i] - delay``, the smallest delay that keeps
    every ``dts <= pts`` (the B-frame reordering depth). That needs the whole clip at once; it
    is compressed video, so an event-sized clip is a few megabytes."""
    start_ms, end_ms = start_ns // 1_000_000, end_ns // 1_000_000
    chosen: list[tuple[int, av.Packet]] = []  # (absolute pts in ms, packet), in decode order
    with ExitStack() as stack:
        template = None
        for seg in segments:
            container = stack.enter_context(av.open(str(root / seg.path)))
            stream = container.streams.video[0]
            template = template or stream
            if _collect(container, stream, seg.start_ns // 1_000_000, start_ms, end_ms, chosen):
                break
        if not chosen:
            raise LookupError("no frames recorded in that range")
        origin = chosen[0][0]
        pts = [t - origin for t, _ in chosen]
        ordered = sorted(pts)
        delay = max(0, max(o - p for o, p in zip(ordered, pts)))
        with av.open(str(out), "w", options=options or {}) as output:
            stream_out = output.add_stream_from_template(template)
            stream_out.time_base = MS
            for (_, packet), p, d in zip(chosen, pts, ordered):
                packet.pts, packet.dts, packet.time_base = p, d - delay, MS
                packet.stream = stream_out
                output.mux(packet)
    return len(chosen)


def _collect(container, stream, seg_start_ms: int, start_ms: int, end_ms: int,
             chosen: list[tuple[int, av.Packet]]) -> bool:
    """Add one segment's packets from the last key frame at or before ``start_ms`` to the first
    packet at or after ``end_ms`` (exclusive; frames decoded after it may refer to it, so they
    go too). Returns True when the end has been reached."""
    for packet in container.demux(stream):
        if packet.size == 0 or packet.pts is None:
            continue
        t = seg_start_ms + int(packet.pts * packet.time_base * 1000)
        if t >= end_ms:
            return True
        if t <= start_ms and packet.is_keyframe:
            chosen.clear()  # a later key frame still before the start: begin there instead
        if chosen or packet.is_keyframe:
            chosen.append((t, packet))
    return False


def main(args: argparse.Namespace) -> int:
    if args.end <= args.start:
        print("camwire clip: error: --end must be after --start", file=sys.stderr)
        return 2
    root = Path(args.dir)
    index = Index(root, readonly=True)
    try:
        segments = index.overlapping(args.camera, args.start, args.end)
    finally:
        index.close()
    if not segments:
        print(f"camwire clip: error: nothing recorded for {args.camera!r} in that range", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    packets = write_clip(segments, root, args.start, args.end, out)
    print(f"wrote {out}: {packets} frames from {len(segments)} segment(s)")
    return 0
