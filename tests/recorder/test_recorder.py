"""The recorder: a real extractor publishing a real clip into a real recorder process; every file
is checked by opening it with PyAV."""

from __future__ import annotations

import calendar
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest
import zmq

from camwire.sample import make_sample_clip
from camwire.common import wire
from conftest import ROOT, bound, tcp

FPS = 25


@pytest.fixture(scope="session")
def gop25_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s at 25 fps with a key frame every second (the sample clip has one every 2 s)."""
    path = tmp_path_factory.mktemp("clips") / "gop25.mp4"
    make_sample_clip(path, gop=25)
    return path


def rows(root: Path) -> list[dict]:
    with sqlite3.connect(root / "index.db") as db:
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute("SELECT * FROM segments ORDER BY start_ns")]
        except sqlite3.OperationalError:  # polled while the recorder is still creating its tables
            return []


def decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(c.streams.video[0]))


def span_s(frames: list[av.VideoFrame]) -> float:
    """Seconds of video: first to last frame, plus one frame."""
    return float((frames[-1].pts - frames[0].pts) * frames[0].time_base) + 1 / FPS


def record(p, daemons, clip: Path, root: Path, enc: str, *recorder_args: str, publish: str | None = None,
           subscribe: str | None = None, realtime: bool = False) -> None:
    """Start a recorder on ``root`` and an extractor publishing ``clip`` to it."""
    publish = publish or tcp()
    daemons.start("recorder", "recorder", "--subscribe", subscribe or publish, "--dir", str(root),
                  "--exit-when-ended", "cam", *recorder_args)
    extra = ("--publish", publish, "--publish-enc", enc, "--publish-wait", "30") + (("--realtime",) if realtime else ())
    p.extractor("cam", str(clip), extra=extra)


def test_passthrough_segments_frames_and_clip(pipeline_factory, daemons, sample_clip: Path, tmp_path: Path) -> None:
    p = pipeline_factory()
    p.worker("worker-1", "covered")
    root = tmp_path / "ring"
    record(p, daemons, sample_clip, root, "passthrough", "--segment", "2")
    assert daemons.wait("recorder") == 0  # it exits when the camera's eos has come through
    assert daemons.wait("extractor-cam") == 0
    published = daemons.stats("extractor-cam")["cam"]["published"]
    stats = daemons.stats("recorder")
    assert published == 300 and stats["written"]["cam"] == 300 and "gaps" not in stats

    segs = rows(root)
    # 12 s cut every 2 s of capture time, on the clip's key frames (every 2 s): six files
    assert len(segs) == 6 and all(s["closed"] and s["enc"] == "h264" and s["gaps"] == 0 for s in segs)
    for s in segs:
        frames = decoded(root / s["path"])
        assert len(frames) == s["frames"] == 50
        assert span_s(frames) == pytest.approx(2.0, abs=1e-3)
        assert (s["end_ns"] - s["start_ns"]) / 1e9 == pytest.approx(2.0, abs=1e-3)
        assert s["bytes"] == (root / s["path"]).stat().st_size
    # consecutive segments meet: nothing is missing between files
    assert all(b["start_ns"] == pytest.approx(a["end_ns"], abs=1e6) for a, b in zip(segs, segs[1:]))
    # passthrough copies the source's packets: the pictures are the source's, bit for bit
    with av.open(str(sample_clip)) as src:
        first_src = next(src.decode(video=0)).to_ndarray(format="gray")
    assert (decoded(root / segs[0]["path"])[0].to_ndarray(format="gray") == first_src).all()

    # camwire clip: from 0.5 s into the 2nd file (it starts on that file's key frame) to the
    # start of the 4th: exactly files 2 and 3, no re-encoding
    out = tmp_path / "clip.mp4"
    start, end = segs[1]["start_ns"] + 500_000_000, segs[3]["start_ns"]
    done = subprocess.run([sys.executable, "-m", "camwire", "clip", "--dir", str(root), "--camera", "cam",
                           "--start", f"{start / 1e9:.6f}", "--end", f"{end / 1e9:.6f}", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    frames = decoded(out)
    assert len(frames) == 100 and span_s(frames) == pytest.approx(4.0, abs=1e-3)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    # a range with nothing in it is an error, not an empty file
    done = subprocess.run([sys.executable, "-m", "camwire", "clip", "--dir", str(root), "--camera", "cam",
                           "--start", "2000-01-01T00:00:00Z", "--end", "2000-01-01T00:01:00Z", "--out",
                           str(tmp_path / "none.mp4")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "nothing recorded" in done.stderr


class LossyRelay(threading.Thread):
    """Between extractor and recorder, drops the frames whose seq is in ``drop``: a lossy network
    made to order. It subscribes upstream only once the recorder has subscribed to it, so the
    extractor's --publish-wait holds until the whole chain is there."""

    def __init__(self, ctx: zmq.Context, upstream: str, downstream: str, drop: set[int]) -> None:
        super().__init__(daemon=True)
        self.ctx, self.upstream, self.downstream, self.drop = ctx, upstream, downstream, drop
        self.done = threading.Event()

    def run(self) -> None:
        pub = self.ctx.socket(zmq.XPUB)
        pub.setsockopt(zmq.LINGER, 2000)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.bind(self.downstream)
        pub.recv()  # the recorder's subscription
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self.upstream)
        try:
            while True:
                parts = sub.recv_multipart()
                msg = wire.unpack(parts[0])
                if isinstance(msg, wire.FrameHeader) and msg.seq in self.drop:
                    continue
                pub.send_multipart(parts)
                if isinstance(msg, wire.Eos):
                    return
        finally:
            sub.close()
            pub.close()
            self.done.set()


def test_gaps_are_counted_and_indexed(pipeline_factory, daemons, zctx, sample_clip: Path, tmp_path: Path) -> None:
    p = pipeline_factory()
    p.worker("worker-1", "covered")
    root = tmp_path / "ring"
    publish, relayed = tcp(), tcp()
    drop = {0, 7, 8, 9, 120, 121, 299}  # the first frame, runs, and the very last (seen only via eos)
    relay = LossyRelay(zctx, publish, relayed, drop)
    relay.start()
    record(p, daemons, sample_clip, root, "lz4", "--segment", "3", publish=publish, subscribe=relayed)
    assert daemons.wait("recorder") == 0
    assert daemons.wait("extractor-cam") == 0  # its stats file is written as it exits
    published = daemons.stats("extractor-cam")["cam"]["published"]
    stats = daemons.stats("recorder")
    assert published == 300
    assert stats["gaps"]["cam"] == len(drop) - 1  # frame 0 was never seen: the stream begins at 1
    assert stats["written"]["cam"] == published - len(drop)
    segs = rows(root)
    assert sum(s["gaps"] for s in segs) == len(drop) - 1
    assert sum(len(decoded(root / s["path"])) for s in segs) == sum(s["frames"] for s in segs) == 300 - len(drop)
    assert [s["enc"] for s in segs] == ["lz4"] * 4 and segs[-1]["gaps"] == 1  # the lost last frame is in the last file


def test_retention_by_age_and_by_bytes(pipeline_factory, daemons, gop25_clip: Path, tmp_path: Path) -> None:
    p = pipeline_factory()
    p.worker("worker-1", "covered")
    root = tmp_path / "ring"
    budget = 40_000  # bytes: a few one-second files of this clip
    record(p, daemons, gop25_clip, root, "passthrough", "--segment", "1", "--retain", "6",
           "--max-bytes", str(budget))
    assert daemons.wait("recorder") == 0
    stats = daemons.stats("recorder")
    segs = rows(root)
    on_disk = sorted(f.name for f in (root / "cam").iterdir())
    assert on_disk == sorted(Path(s["path"]).name for s in segs)  # index and folder agree
    assert sum(s["bytes"] for s in segs) <= budget
    assert stats["deleted"].get("bytes", 0) >= 1 and stats["segments"]["cam"] == 12
    # what is left is the newest part of the ring, none of it older than --retain
    newest = segs[-1]["end_ns"]
    assert all(newest - s["start_ns"] <= 6e9 + 1e9 for s in segs)
    assert len(segs) + sum(stats["deleted"].values()) == 12


def test_retention_by_age_alone(pipeline_factory, daemons, gop25_clip: Path, tmp_path: Path) -> None:
    p = pipeline_factory()
    p.worker("worker-1", "covered")
    root = tmp_path / "ring"
    # paced like a camera: retention's "now" is the wall clock, never a capture time
    record(p, daemons, gop25_clip, root, "passthrough", "--segment", "1", "--retain", "4s", realtime=True)
    assert daemons.wait("recorder") == 0
    stats = daemons.stats("recorder")
    segs = rows(root)
    # every file that ended more than 4 s before the end (the wall clock, at the clip's last
    # frame) is gone, oldest first, and the newest file is still there
    assert stats["deleted"] == {"age": 12 - len(segs)} and 12 - len(segs) >= 7
    assert segs, "every file was deleted"
    assert segs[-1]["end_ns"] - segs[0]["end_ns"] <= 4e9 + 1e8  # within 4 s of the newest, plus its last frame
    assert sorted(f.name for f in (root / "cam").iterdir()) == [Path(s["path"]).name for s in segs]


@pytest.mark.parametrize("enc", ["passthrough", "lz4"])
def test_files_play_after_kill_9(pipeline_factory, daemons, sample_clip: Path, tmp_path: Path, enc: str) -> None:
    p = pipeline_factory()
    p.worker("worker-1", "covered")
    root = tmp_path / "ring"
    record(p, daemons, sample_clip, root, enc, "--segment", "2", realtime=True)
    deadline = time.monotonic() + 60
    # kill once two files are closed and the third has its first cluster on disk (a file killed
    # before that holds only its header: that is the "last second" that may be lost, and a
    # restarted recorder removes it)
    while not (root / "index.db").exists() or not _two_closed_and_one_flushed(root):
        assert time.monotonic() < deadline, "no closed segment within 60 s"
        assert daemons.procs["recorder"].poll() is None
        time.sleep(0.05)  # polling the files on disk: there is no message to await from outside
    daemons.procs["recorder"].kill()
    daemons.procs["recorder"].wait()

    segs = rows(root)
    open_rows = [s for s in segs if not s["closed"]]
    assert len(open_rows) <= 1
    for s in segs:
        frames = decoded(root / s["path"])  # raises if a file does not play
        if s["closed"]:
            assert len(frames) == s["frames"]
    # the file being written plays up to its last flushed cluster (at most a second is lost);
    # a restarted recorder finds it, reads it and completes its index row
    daemons.start("recorder-2", "recorder", "--subscribe", tcp(), "--dir", str(root))
    deadline = time.monotonic() + 60
    while any(not s["closed"] for s in rows(root)):
        assert time.monotonic() < deadline, "the open segment was not recovered"
        time.sleep(0.1)
    assert daemons.stop("recorder-2") == 0
    for s in rows(root):
        assert len(decoded(root / s["path"])) == s["frames"] and s["end_ns"] > s["start_ns"]
    assert daemons.stats("recorder-2").get("recovered", 0) == len(open_rows)


def _two_closed_and_one_flushed(root: Path) -> bool:
    segs = rows(root)
    if sum(s["closed"] for s in segs) < 2 or segs[-1]["closed"]:
        return False
    last = root / segs[-1]["path"]  # the file appears when its first frame is written
    return last.exists() and last.stat().st_size > 2000


def test_event_keeps_the_files_around_it(pipeline_factory, daemons, sample_clip: Path, tmp_path: Path) -> None:
    p = pipeline_factory()
    p.worker("worker-1", "covered")
    root = tmp_path / "ring"
    # a tight byte budget: the ring deletes old files during the run, kept ones must survive it
    # paced like a camera, so the event comes while its files are still in the ring
    record(p, daemons, sample_clip, root, "passthrough", "--segment", "2", "--events", p.events_pub,
           "--pre", "3", "--post", "3", "--keep-types", "camera_covered", "--max-bytes", "30000", realtime=True)
    event = p.events.wait_type("camera_covered")
    assert daemons.wait("recorder") == 0
    folder = root / "kept" / time.strftime("%Y-%m-%d", time.gmtime(event["ts"])) / event["id"]
    kept = json.loads((folder / "event.json").read_text())
    assert kept["complete"] and kept["id"] == event["id"] and kept["camera"] == "cam"
    t = int(event["ts"] * 1e9)
    assert kept["window"] == {"from_ns": t - 3_000_000_000, "to_ns": t + 3_000_000_000}
    files = [folder / name for name in kept["files"]]
    assert files and all(f.exists() for f in files)
    # the kept files cover the whole window: from before t-3 s to after t+3 s, without holes
    starts, ends = [], []
    for f in files:
        frames = decoded(f)
        start_ns = _start_ns_from_name(f.name)
        starts.append(start_ns)
        ends.append(start_ns + int(span_s(frames) * 1e9))
    assert min(starts) <= t - 3e9 and max(ends) >= t + 3e9
    assert all(b == pytest.approx(a, abs=1e6) for a, b in zip(sorted(ends)[:-1], sorted(starts)[1:]))
    assert daemons.stats("recorder")["deleted"]["bytes"] >= 1  # retention ran, and kept files stayed


def _start_ns_from_name(name: str) -> int:
    """``cam-20261121T051900.123Z.mkv`` -> ns since the epoch."""
    stamp = name.split("-", 1)[1].removesuffix(".mkv")
    secs = calendar.timegm(time.strptime(stamp[:15], "%Y%m%dT%H%M%S"))
    return secs * 1_000_000_000 + int(stamp[16:19]) * 1_000_000


def test_run_with_record(tmp_path: Path, sample_clip: Path) -> None:
    """``camwire run --record`` starts a recorder fed by every extractor and the sink's events."""
    stats = tmp_path / "stats.json"
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-m", "camwire", "run", "--camera", f"a={sample_clip}",
                           "--camera", f"b={sample_clip}", "--detector", "covered", "--workers", "1",
                           "--once", "--events", str(tmp_path / "events.jsonl"), "--stats", str(stats),
                           "--record", str(tmp_path / "ring"), "--segment", "4", "--pre", "1", "--post", "1",
                           "--keep-types", "camera_covered"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    rec = json.loads(stats.read_text())["recorder"]
    assert rec["written"] == {"a": 300, "b": 300} and rec["segments"] == {"a": 3, "b": 3}
    assert rec["events_kept"] == {"camera_covered": 2}
    assert "recorded: 600 frames in 6 segments; gaps 0; events kept 2" in done.stdout
    kept = list((tmp_path / "ring" / "kept").glob("*/*/event.json"))
    assert len(kept) == 2 and all(json.loads(k.read_text())["complete"] for k in kept)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "camwire", "recorder", "--subscribe", tcp(), "--dir",
                           str(tmp_path), "--max-bytes", "lots"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "a size like 500M" in done.stderr
    done = subprocess.run([sys.executable, "-m", "camwire", "clip", "--dir", str(tmp_path), "--camera", "x",
                           "--start", "yesterday", "--end", "now", "--out", "x.mp4"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "not a time" in done.stderr


def test_sigterm_finalises_the_open_file(pipeline_factory, daemons, sample_clip: Path, tmp_path: Path) -> None:
    p = pipeline_factory()
    p.worker("worker-1", "covered")
    root = tmp_path / "ring"
    record(p, daemons, sample_clip, root, "lz4", "--segment", "60", realtime=True)
    deadline = time.monotonic() + 60
    while not (root / "index.db").exists() or not rows(root):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc = daemons.procs["recorder"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    (seg,) = rows(root)
    assert seg["closed"] and len(decoded(root / seg["path"])) == seg["frames"] > 0


def test_events_of_several_sinks_keep_files(pipeline_factory, daemons, zctx, sample_clip: Path, tmp_path: Path) -> None:
    """Several sinks, each owning its cameras: the recorder subscribes to every one's events
    (``--events`` repeated) and keeps files around an event from any of them, here the second."""
    other_sink, other_addr = bound(zctx, zmq.PUB)  # a sink that owns other cameras: says nothing of this one
    p = pipeline_factory()
    p.worker("worker-1", "covered")
    root = tmp_path / "ring"
    record(p, daemons, sample_clip, root, "passthrough", "--segment", "2", "--events", other_addr,
           "--events", p.events_pub, "--pre", "1", "--post", "1", "--keep-types", "camera_covered", realtime=True)
    event = p.events.wait_type("camera_covered")
    assert daemons.wait("recorder") == 0
    folder = root / "kept" / time.strftime("%Y-%m-%d", time.gmtime(event["ts"])) / event["id"]
    assert json.loads((folder / "event.json").read_text())["complete"]
    other_sink.close(linger=0)
