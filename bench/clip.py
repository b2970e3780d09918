"""Cutting a clip from the ring: peak memory and time against the clip's length.

A ring of one-minute Matroska segments of 1280x720 H.264 with B-frames (a camera's stream at
about 4 Mbit/s) is written once; then ``recorder.clip.write_clip`` cuts clips of 1, 5 and 10
minutes from it into MP4 (what ``camwire clip``, the web console's export and a kept clip's
upload do), each in a process of its own, whose peak resident memory (``ru_maxrss`` from
``wait4``) and wall time are reported. Memory that grows with the clip is what an hour-long
kept clip would turn into gigabytes.

Run: ``.venv/bin/python bench/clip.py [--minutes 1,5,10] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camwire.recorder.segment import MS  # noqa: E402

FPS = 25
SEGMENT_S = 60
LOOP_S = 10  # encoded once, repeated through each segment (encoding a whole ring would take long)
T0_NS = 1_790_000_000_000_000_000

CUT = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from camwire.recorder.clip import write_clip
from camwire.recorder.index import Segment
segs = [Segment(i, "cam", {t0} + i * {seg_ns}, {t0} + (i + 1) * {seg_ns}, f"seg{{i:03d}}.mkv", "h264", 0, 0, 0, True)
        for i in range({n})]
write_clip(segs, Path({ring!r}), {t0}, {t0} + {minutes} * 60_000_000_000, Path({out!r}), {{"movflags": "+faststart"}})
"""


def encode_loop(path: Path) -> None:
    """LOOP_S seconds of textured, moving 720p video (a flat picture would compress to nothing)."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "bf": "2", "g": str(2 * FPS),
                                                              "b": "4M", "maxrate": "4M", "bufsize": "8M"})
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for i in range(LOOP_S * FPS):
            img = np.roll(base, i, axis=1) ^ rng.integers(0, 24, base.shape, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(np.repeat(np.repeat(img, 8, 0), 8, 1), format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def write_ring(ring: Path, minutes: int) -> int:
    """One file per minute, each the loop repeated; returns the bytes written."""
    loop = ring / "loop.mp4"
    encode_loop(loop)
    total = 0
    with av.open(str(loop)) as src:
        template = src.streams.video[0]
        packets = [(bytes(p), int(p.pts * p.time_base * 1000), int(p.dts * p.time_base * 1000), p.is_keyframe)
                   for p in src.demux(template) if p.size]
        for i in range(minutes):
            path = ring / f"seg{i:03d}.mkv"
            with av.open(str(path), "w", format="matroska") as out:
                stream = out.add_stream_from_template(template)
                stream.time_base = MS
                for rep in range(SEGMENT_S // LOOP_S):
                    for data, pts, dts, key in packets:
                        p = av.Packet(data)
                        p.pts, p.dts, p.time_base = pts + rep * LOOP_S * 1000, dts + rep * LOOP_S * 1000, MS
                        p.is_keyframe, p.stream = key, stream
                        out.mux(p)
            total += path.stat().st_size
    return total


def cut(ring: Path, minutes: int, segments: int) -> dict:
    out = ring / f"clip-{minutes}.mp4"
    code = CUT.format(root=str(ROOT), t0=T0_NS, seg_ns=SEGMENT_S * 1_000_000_000, n=segments, ring=str(ring),
                      minutes=minutes, out=str(out))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the {minutes}-minute cut failed")
    with av.open(str(out)) as clip:
        stream = clip.streams.video[0]
        frames = sum(1 for p in clip.demux(stream) if p.size)
    return {"minutes": minutes, "clip_mb": round(out.stat().st_size / 1e6, 1), "frames": frames,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "wall_s": round(wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--minutes", default="1,5,10", help="clip lengths, comma-separated")
    ap.add_argument("--out", help="write the results as JSON here too")
    args = ap.parse_args()
    lengths = sorted(int(m) for m in args.minutes.split(","))
    with tempfile.TemporaryDirectory(prefix="camwire-bench-clip-") as tmp:
        ring = Path(tmp)
        size = write_ring(ring, lengths[-1])
        rows = [cut(ring, m, lengths[-1]) for m in lengths]
    result = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "ring_mb": round(size / 1e6, 1), "cuts": rows}
    for r in rows:
        print(f"{r['minutes']:>3} min clip: {r['clip_mb']:>7.1f} MB, {r['frames']} frames, "
              f"peak RSS {r['peak_rss_mb']:.1f} MB, {r['wall_s']:.2f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
