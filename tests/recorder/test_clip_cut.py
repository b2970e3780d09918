"""Cutting a clip from many segments (recorder.clip.write_clip, behind ``camwire clip``, the web
console's export and a kept clip's upload): the segments are written by the recorder's own
segment writer, the clip is cut in a process of its own, as the CLI runs it."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import av
import numpy as np

from camwire.common import wire
from conftest import ROOT
from camwire.recorder.index import Index
from camwire.recorder.segment import FrameSegment

T0_NS = 1_790_000_000_000_000_000
FRAMES = 5  # per segment, 0.2 s apart: each file is one second
STEP_NS = 200_000_000
OPEN_FILES = 48  # the clip's process may hold this many files at once; the clip spans more segments
SEGMENTS = 80


def grey(seq: int) -> int:
    """Frame ``seq``'s grey level: 16 apart from its neighbours', so the clip's order shows."""
    return seq * 16 % 256


def write_ring(root: Path) -> None:
    """SEGMENTS one-second files of one camera, indexed as the recorder indexes them."""
    index = Index(root)
    try:
        for i in range(SEGMENTS):
            start = T0_NS + i * FRAMES * STEP_NS
            rel = f"cam/seg{i:03d}.mkv"
            headers = [wire.FrameHeader(camera="cam", seq=i * FRAMES + j, ts_ns=start + j * STEP_NS, width=64,
                                        height=48, key=j == 0) for j in range(FRAMES)]
            seg_id = index.open_segment("cam", start, rel, "lz4")
            seg = FrameSegment(root / rel, headers[0], preset="ultrafast", crf=30, gop=FRAMES)
            for header in headers:
                seg.write(header, np.full((48, 64, 3), grey(header.seq), np.uint8))
            index.close_segment(seg_id, seg.end_ns, seg.close(), seg.frames, 0)
    finally:
        index.close()


def test_a_clip_over_more_segments_than_the_process_may_open_files(tmp_path: Path) -> None:
    """A day exported from a ring of short segments spans more files than a process may hold
    open (1024 by default); the cut opens one at a time, so it is limited by nothing but the range."""
    write_ring(tmp_path)
    out = tmp_path / "day.mp4"

    def few_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))

    done = subprocess.run([sys.executable, "-m", "camwire", "clip", "--dir", str(tmp_path), "--camera", "cam",
                           "--start", str(T0_NS / 1e9), "--end", str(T0_NS / 1e9 + SEGMENTS),
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          preexec_fn=few_files)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {out}: {SEGMENTS * FRAMES} frames from {SEGMENTS} segment(s)"
    with av.open(str(out)) as clip:
        greys = [int(f.to_ndarray(format="gray")[24, 32]) for f in clip.decode(video=0)]
    assert len(greys) == SEGMENTS * FRAMES  # every frame, each once, in order
    assert max(abs(g - grey(seq)) for seq, g in enumerate(greys)) <= 4
