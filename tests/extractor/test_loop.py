"""A file camera with ``loop = true`` (a test camera): played again from its start each time it
ends, its seq and capture times going on, and never an Eos. A real extractor process reading a
real clip, what it sends received on a PULL socket bound here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from camwire.common import wire
from camwire.sample import make_sample_clip
from conftest import Pull

FRAMES = 10  # the clip: 1 s at 10 fps


@pytest.fixture
def pull(zctx):
    return Pull(zctx)


def test_a_looping_file_sends_more_frames_than_it_holds_seq_and_time_going_on_with_no_eos(
        daemons, pull, tmp_path: Path) -> None:
    clip = tmp_path / "short.mp4"
    assert make_sample_clip(clip, seconds=1.0, fps=10, gop=5, covered=None) == FRAMES
    config = tmp_path / "camwire.toml"
    config.write_text(f'[cameras.loopy]\nurl = "{clip}"\nloop = true\ndetect = "always"\n')
    daemons.start("extractor", "extractor", "--config", str(config), "--push", pull.addr)
    # three passes and more: the file has only FRAMES frames, numbered 0 .. FRAMES - 1 in a pass
    pull.until(lambda m: isinstance(m, wire.FrameHeader) and m.seq >= 3 * FRAMES)
    assert daemons.stop("extractor") == 0
    frames = pull.frames("loopy")
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs))  # always increasing, never back to 0
    stamps = [f.ts_ns for f in frames]
    assert all(a < b for a, b in zip(stamps, stamps[1:]))  # capture times go on across the passes
    assert not [m for m in pull.seen if isinstance(m, wire.Eos)]
    assert not [s for s in pull.statuses() if s.state in ("offline", "failed")]
    stats = daemons.stats("extractor")["loopy"]
    assert stats["loops"] >= 3 and stats["decoded"] > 3 * FRAMES
    assert "ended_early" not in stats


def test_a_run_that_ends_when_its_files_do_refuses_a_looping_camera(tmp_path: Path) -> None:
    clip = tmp_path / "short.mp4"
    make_sample_clip(clip, seconds=1.0, fps=10, covered=None)
    config = tmp_path / "camwire.toml"
    config.write_text(f'[classifier]\ndetector = "covered"\n\n[cameras.loopy]\nurl = "{clip}"\nloop = true\n')
    done = subprocess.run([sys.executable, "-m", "camwire", "run", "--config", str(config), "--once"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "loopy has loop = true, so it never ends" in done.stderr
