"""The recorder stays bounded whatever the frames: a seq that jumps costs a count, not a file;
files are cut by size too; a restart's missing frames are a gap; a frame over --max-frame-bytes
is refused from its header; large frames over many cameras keep its memory within
--encode-memory. A real recorder process; the test stands in for the extractors (recorder_feed)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from camwire.common import pixels, wire
from conftest import scrape, value
from camwire.recorder.recovery import probe
from recorder_feed import Feed, closed_rows, rows, start_recorder

MP20 = (5472, 3648)  # a 20-megapixel camera


def _gaps_of(seqs: list[int]) -> tuple[int, int]:
    """What the recorder should count for ``seqs``: frames missing (holes), and seqs that went back."""
    gaps = restarts = 0
    expect = None
    for seq in seqs:
        if expect is not None and seq > expect:
            gaps += seq - expect
        elif expect is not None and seq < expect:
            restarts += 1
        expect = seq + 1
    return gaps, restarts


def test_a_seq_jump_is_a_gap_counted_not_a_new_file(daemons, zctx, tmp_path: Path) -> None:
    root = tmp_path / "ring"
    feed = Feed(zctx)
    start_recorder(daemons, feed, root, "--segment", "60", "--exit-when-ended", "cam")
    feed.subscribed()
    seqs: list[int] = []
    feed.seq["cam"] = 0
    for i in range(200):
        if i % 10 == 9:  # a hostile or broken numbering: forward 1000, then back 500, ...
            feed.seq["cam"] += 1000 if i % 20 == 9 else -500
        seqs.append(feed.seq["cam"])
        feed.frame()
    feed.send(wire.pack(wire.Eos(camera="cam", sent=200, last_seq=seqs[-1])))
    assert daemons.wait("recorder") == 0

    stats = daemons.stats("recorder")
    gaps, restarts = _gaps_of(seqs)
    assert stats["written"]["cam"] == 200 and stats["gaps"]["cam"] == gaps and stats["restarts"]["cam"] == restarts
    segs = rows(root)
    assert len(segs) == 1 and segs[0]["frames"] == 200 and segs[0]["gaps"] == gaps
    assert [p.name for p in (root / "cam").iterdir()] == [Path(segs[0]["path"]).name]


def test_files_are_cut_by_size(daemons, zctx, tmp_path: Path) -> None:
    root = tmp_path / "ring"
    feed = Feed(zctx, size=(240, 180))  # noise: every frame costs the encoder some kB
    limit = 64 << 10
    start_recorder(daemons, feed, root, "--segment", "60", "--max-segment-bytes", str(limit),
                   "--exit-when-ended", "cam")
    feed.subscribed()
    feed.play(lambda: len(closed_rows(root)) >= 3)
    feed.end()
    assert daemons.wait("recorder") == 0
    segs = rows(root)
    assert sum(s["frames"] for s in segs) == feed.sent() == daemons.stats("recorder")["written"]["cam"]
    # each file but the last was cut once it held the limit, long before its 60 s
    assert all(s["bytes"] >= limit for s in segs[:-1])
    assert all(s["end_ns"] - s["start_ns"] < 30e9 for s in segs)


def _flushed(root: Path) -> bool:
    """The file being written holds a frame on disk (what a kill -9 leaves playable)."""
    segs = rows(root)
    return bool(segs) and not segs[-1]["closed"] and (root / segs[-1]["path"]).exists() \
        and probe(root / segs[-1]["path"])[0] > 0


@pytest.mark.parametrize("how", ["sigterm", "kill"])
def test_frames_published_while_the_recorder_restarts_are_a_gap(daemons, zctx, tmp_path: Path, how: str) -> None:
    root = tmp_path / "ring"
    feed = Feed(zctx)
    start_recorder(daemons, feed, root, "--segment", "60", name="first")
    feed.subscribed()
    feed.play(lambda: feed.sent() >= 50 and _flushed(root))
    if how == "kill":
        daemons.procs["first"].kill()  # what was not flushed yet is lost: a gap too
        daemons.procs["first"].wait()
    else:
        assert daemons.stop("first") == 0
    for _ in range(30):  # published while no recorder listens
        feed.frame()

    again = Feed(zctx)
    again.seq = dict(feed.seq)  # the same camera's stream, going on
    start_recorder(daemons, again, root, "--segment", "60", "--exit-when-ended", "cam", name="second")
    again.subscribed()
    again.play(lambda: len(rows(root)) >= 2)
    again.end()
    assert daemons.wait("second") == 0

    stats = daemons.stats("second")
    assert stats["gaps"]["cam"] >= 30 and "restarts" not in stats
    segs = rows(root)
    assert all(s["closed"] for s in segs) and segs[-1]["gaps"] == stats["gaps"]["cam"]
    # every seq the camera published is in a file or counted as a gap, across the restart
    assert sum(s["frames"] + s["gaps"] for s in segs) == again.sent()


def _rss_mb(pid: int) -> dict[str, float]:
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in f)
                if k in ("VmRSS", "VmHWM")}


def _big_parts(enc: str) -> wire.Buffer:
    """One 20 MP payload (a gradient with some noise, as a scene compresses), made once."""
    w, h = MP20
    rng = np.random.default_rng(3)
    image = (np.add.outer(np.arange(h) // 16, np.arange(w) // 16) % 256).astype(np.uint8)
    image = np.repeat(image[:, :, None], 3, axis=2) + rng.integers(0, 8, (h, w, 3), dtype=np.uint8)
    header = wire.FrameHeader(camera="x", seq=0, ts_ns=time.time_ns(), width=w, height=h, enc=enc)
    return pixels.encode_frame(header, image)[1]


def test_20_megapixel_frames_over_many_cameras_stay_within_encode_memory(daemons, zctx, tmp_path: Path) -> None:
    """256 cameras: 240 small ones, 8 sending 20 MP LZ4 frames and 8 sending 20 MP JPEG frames.

    The bound is a memory-safety one: the recorder's RSS before any frame, plus --encode-memory
    (every encoder open, estimated per pixel from measurements), plus four raw 20 MP frames (the
    message, the decoded frame, its converted copy, one more in flight: 240 MB), plus 256 MB for
    what the allocator keeps. Without the budget, each of the 16 large cameras held its own
    encoder, about 640 MB each (10 GB)."""
    root = tmp_path / "ring"
    feed = Feed(zctx)
    budget = 1 << 30  # the small cameras' encoders and one 20 MP encoder fit, two do not
    port = start_recorder(daemons, feed, root, "--segment", "60", "--encode-memory", str(budget),
                          "--max-frame-bytes", "64M")
    feed.subscribed()
    pid = daemons.procs["recorder"].pid
    base = _rss_mb(pid)["VmRSS"]
    sent: dict[str, int] = {}

    def accounted() -> bool:
        m = scrape(port)
        return all(value(m, "camwire_recorder_written_total", camera=c)
                   + value(m, "camwire_recorder_dropped_total", camera=c, reason="encode_memory") == n
                   for c, n in sent.items())

    def wait(until, what: str) -> None:
        deadline = time.monotonic() + 300
        while not until():
            assert time.monotonic() < deadline, f"not done within 300 s: {what}"
            assert daemons.procs["recorder"].poll() is None, "the recorder died"
            time.sleep(0.2)  # polling the metrics: there is nothing to await from outside

    small = [f"small{i}" for i in range(240)]
    for camera in small:
        feed.frame(camera)
        sent[camera] = 1
    wait(accounted, "the small cameras")

    # a frame whose header claims more than --max-frame-bytes: refused before its payload is looked at
    huge = wire.FrameHeader(camera="huge", seq=0, ts_ns=time.time_ns(), width=6000, height=6000, enc="lz4")
    feed.send(wire.pack(huge), b"not even lz4")
    wait(lambda: value(scrape(port), "camwire_recorder_malformed_total", reason="too_large") == 1, "too_large")

    for enc in ("lz4", "jpeg"):  # one kind after the other, so each gets the encoder in turn
        payload = _big_parts(enc)
        cameras = [f"{enc}{i}" for i in range(8)]
        for _ in range(2):
            for camera in cameras:
                seq = sent.get(camera, 0)
                header = wire.FrameHeader(camera=camera, seq=seq, ts_ns=time.time_ns(), width=MP20[0],
                                          height=MP20[1], enc=enc)
                feed.send(*wire.frame_parts(header, payload))
                sent[camera] = seq + 1
            wait(accounted, f"a round of {enc} frames")
        for camera in cameras:  # their files close, and their encoders with them
            feed.send(wire.pack(wire.Eos(camera=camera, sent=sent[camera], last_seq=sent[camera] - 1)))
    peak = _rss_mb(pid)["VmHWM"]
    assert daemons.stop("recorder") == 0

    stats = daemons.stats("recorder")
    assert len(stats["cameras"]) == 256 and stats["malformed"] == {"too_large": 1}
    assert "errors" not in stats, stats.get("errors")
    for enc in ("lz4", "jpeg"):  # one camera of each kind recorded, the others counted, not recorded
        recorded = [c for c in sent if c.startswith(enc) and stats["written"].get(c)]
        assert len(recorded) == 1 and stats["written"][recorded[0]] == 2
        assert sum(stats["dropped"].get(c, {}).get("encode_memory", 0) for c in sent if c.startswith(enc)) == 14
    raw_mb = MP20[0] * MP20[1] * 3 / 2**20
    bound = base + budget / 2**20 + 4 * raw_mb + 256
    print(f"recorder RSS: {base:.0f} MB at start, peak {peak:.0f} MB, bound {bound:.0f} MB")
    assert peak < bound
