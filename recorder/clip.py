"""``camwire clip``: one video file for a camera and a time range, cut from the recorder's ring.

Packets are copied, never re-encoded: the clip starts at the last key frame at or before
``--start`` (so its first frame decodes) and ends before the first frame at or after ``--end``.
The segments are found in the ring's index, not by listing folders. The output container
follows the file name (``.mkv``, ``.mp4``, ...).

:func:`write_clip` is the one cut every clip takes: this command's, the web console's exports and
kept event clips (web.recordings: a kept clip cut to the window it was kept for), and kept clips
going to object storage (recorder.uploads).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import av
import av.container
import av.video.stream

from camwire.recorder.index import Index, Segment
from camwire.common.daemon import EXIT_FAILED, EXIT_OK, EXIT_OPTIONS
from camwire.recorder.segment import MS


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
    every ``dts <= pts`` (the B-frame reordering depth). That needs every time of the clip before
    its first packet is written, so the segments are read twice: once for the times (a few bytes
    a frame), once to copy the packets, one file open at a time. Memory stays flat however long
    the clip: an object tracked for an hour keeps an hour of video, an operator may export a day."""
    start_ms, end_ms = start_ns // 1_000_000, end_ns // 1_000_000
    first, times = _choose(segments, root, start_ms, end_ms)
    if first is None:
        raise LookupError("no frames recorded in that range")
    pts = [t - times[0] for t in times]
    ordered = sorted(pts)
    delay = max(0, max(o - p for o, p in zip(ordered, pts)))
    with av.open(str(out), "w", options=options or {}) as output:
        stream_out = None
        for n, (stream, packet) in enumerate(_packets(segments, root, first, len(times))):
            if stream_out is None:
                stream_out = output.add_stream_from_template(stream)
                stream_out.time_base = MS
            packet.pts, packet.dts, packet.time_base = pts[n], ordered[n] - delay, MS
            packet.stream = stream_out
            output.mux(packet)
    return len(times)


def _readable(container: av.container.InputContainer) -> Iterator[tuple[av.video.stream.VideoStream, av.Packet]]:
    """The video packets of a segment that hold a frame with a time (not the flushing empty ones)."""
    stream = container.streams.video[0]
    for packet in container.demux(stream):
        if packet.size and packet.pts is not None:
            yield stream, packet


def _choose(segments: list[Segment], root: Path, start_ms: int, end_ms: int) -> tuple[tuple[int, int] | None, list[int]]:
    """The clip's first packet, as (segment, its place among the segment's readable packets),
    and the absolute time (ms) of each of its packets in decode order: from the last key frame at
    or before ``start_ms`` to the first packet at or after ``end_ms`` (exclusive; frames decoded
    after it may refer to it, so they go too)."""
    first: tuple[int, int] | None = None
    times: list[int] = []
    for i, seg in enumerate(segments):
        seg_start_ms = seg.start_ns // 1_000_000
        with av.open(str(root / seg.path)) as container:
            for j, (_, packet) in enumerate(_readable(container)):
                t = seg_start_ms + int(packet.pts * packet.time_base * 1000)
                if t >= end_ms:
                    return first, times
                if t <= start_ms and packet.is_keyframe:
                    first, times = None, []  # a later key frame still before the start: begin there instead
                if times or packet.is_keyframe:
                    if not times:
                        first = (i, j)
                    times.append(t)
    return first, times


def _packets(segments: list[Segment], root: Path, first: tuple[int, int],
             count: int) -> Iterator[tuple[av.video.stream.VideoStream, av.Packet]]:
    """``count`` readable packets from ``first`` on, each with its stream, one segment open at a
    time (a packet is the caller's to write before the next is asked for: its file closes after)."""
    seg_index, skip = first
    for seg in segments[seg_index:]:
        with av.open(str(root / seg.path)) as container:
            for j, item in enumerate(_readable(container)):
                if j < skip:
                    continue
                yield item
                count -= 1
                if count == 0:
                    return
        skip = 0


def main(args: argparse.Namespace) -> int:
    if args.end <= args.start:
        print("camwire clip: error: --end must be after --start", file=sys.stderr)
        return EXIT_OPTIONS
    root = Path(args.dir)
    index = Index(root, readonly=True)
    try:
        segments = index.overlapping(args.camera, args.start, args.end)
    finally:
        index.close()
    if not segments:
        print(f"camwire clip: error: nothing recorded for {args.camera!r} in that range", file=sys.stderr)
        return EXIT_FAILED
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    packets = write_clip(segments, root, args.start, args.end, out)
    print(f"wrote {out}: {packets} frames from {len(segments)} segment(s)")
    return EXIT_OK
