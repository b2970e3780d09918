"""Kept clips to object storage (recorder.uploads, common.upload): a real recorder and a real
sink as processes from one camwire.toml, against a real S3 protocol server run locally (moto's
server mode, tests/s3_server.py: an S3 protocol stand-in for AWS, MinIO or Ceph, spoken to by
boto3 over loopback). The test stands in for the extractor and the sink's PUB (recorder_feed);
the recorder's ``uploaded`` events go to the real sink, which writes them to its events file."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import msgspec
import pytest
import structlog

from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.ids import event_id
from camwire.common.paths import utc_day
from camwire.common.upload import UploadConfig, Uploader, upload_id
from conftest import ROOT, fill, free_port, tcp
from camwire.recorder import uploads
from camwire.recorder.index import Keep, Segment
from camwire.recorder.uploads import final
from recorder_feed import Feed, closed_rows, metric, rows
from s3_server import ACCESS_KEY, SECRET_KEY, S3Server

BUCKET = "camwire-clips"
ENV = {"S3_ACCESS_KEY": ACCESS_KEY, "S3_SECRET_KEY": SECRET_KEY}
S = 10**9


class TimedFeed(Feed):
    """The extractor's stand-in, remembering each frame's capture time."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.times: list[int] = []

    def frame(self, camera: str = "cam", ts_ns: int | None = None) -> None:
        ts_ns = ts_ns or time.time_ns()
        self.times.append(ts_ns)
        super().frame(camera, ts_ns)


def _object(object_id: str, phase: str, first_ns: int, last_ns: int, n: int) -> wire.Event:
    return wire.Event(id=event_id(last_ns, "cam", "object", n), type="object", camera="cam", ts=last_ns / 1e9,
                      object_id=object_id, phase=phase, label="person", score=0.8, top_score=0.9,
                      first_seen=first_ns / 1e9, last_seen=last_ns / 1e9, box=(1.0, 2.0, 3.0, 4.0))


def write_config(tmp: Path, endpoint: str, recorder: str, sockets: str, what: str = '"clips"',
                 ring: Path | None = None) -> Path:
    path = tmp / "camwire.toml"
    path.write_text(f"""
[sockets]
{sockets}

[sink]
events = "{tmp / 'events.jsonl'}"
data_dir = "{tmp / 'data'}"

[recorder]
dir = "{ring or tmp / 'ring'}"
{recorder}

[upload]
endpoint = "{endpoint}"
bucket = "{BUCKET}"
prefix = "site1"
access_key = "${{S3_ACCESS_KEY}}"
secret_key = "${{S3_SECRET_KEY}}"
what = [{what}]
retry_for = "1h"
retry_max = "1s"
""")
    return path


def uploaded_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [e for line in path.read_text().splitlines() if (e := json.loads(line))["type"] == "uploaded"]


def objects(s3) -> dict[str, dict]:
    return {o["Key"]: o for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def test_which_kept_clips_are_final() -> None:
    assert final({"type": "object", "object_id": "a", "phase": "end"})
    assert not final({"type": "object", "object_id": "a", "phase": "start"})
    assert not final({"type": "object", "object_id": "a", "phase": "update"})
    assert final({"type": "camera_covered", "object_id": None})


def test_a_kept_clip_goes_up_as_one_mp4_and_the_sink_tells(daemons, zctx, tmp_path: Path, monkeypatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)  # the daemons' ${VAR}s, as a service manager would set them
    root = tmp_path / "ring"
    feed, events = TimedFeed(zctx), Feed(zctx)
    with S3Server(tmp_path / "moto.log") as store:
        s3 = store.client()
        s3.create_bucket(Bucket=BUCKET)
        path = write_config(tmp_path, store.endpoint, f'subscribe = ["{feed.addr}"]\nevents = "{events.addr}"\n'
                            'segment = "1s"\npre = "500ms"\npost = "500ms"\n', f'results = "{tcp()}"')
        daemons.start("sink", "sink", "--config", str(path))
        daemons.start("recorder", "recorder", "--config", str(path))
        for publisher in (feed, events):  # the recorder subscribed to both: nothing sent is missed
            publisher.subscribed()
        feed.play(lambda: len(closed_rows(root)) >= 2)

        first = time.time_ns()
        obj = event_id(first, "cam", "object")
        events.send(wire.pack(_object(obj, "start", first, first, 0)))
        n = len(closed_rows(root))
        feed.play(lambda: len(closed_rows(root)) >= n + 2)  # seen for a couple of seconds
        last = time.time_ns()
        end = _object(obj, "end", first, last, 1)
        events.send(wire.pack(end))
        covered = wire.Event(id=event_id(time.time_ns(), "cam", "camera_covered"), type="camera_covered",
                             camera="cam", ts=time.time())
        events.send(wire.pack(covered))  # not an object's: final as soon as its window is on disk
        feed.play(lambda: len(uploaded_events(tmp_path / "events.jsonl")) >= 2)
        assert daemons.stop("recorder") == 0
        assert daemons.stop("sink") == 0

        told = {u["of"]: u for u in uploaded_events(tmp_path / "events.jsonl")}
        assert sorted(told) == sorted([end.id, covered.id])  # the start's clip never went: not final
        found = objects(s3)
        folder = f"site1/cam/{utc_day(end.ts)}/{end.id}.clip/"
        keys = [f"{folder}00-clip.mp4", f"{folder}01-event.json", f"{folder}02-manifest.json"]
        assert told[end.id]["urls"] == [f"{store.endpoint}/{BUCKET}/{k}" for k in keys]
        assert told[end.id]["object_id"] == obj and told[end.id]["camera"] == "cam"
        assert set(keys) <= set(found) and len(found) == 6  # the covered event's three too
        assert all(found[k]["LastModified"] <= found[keys[2]]["LastModified"] for k in keys)
        manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=keys[2])["Body"].read())
        assert manifest["event"]["id"] == end.id and [p["key"] for p in manifest["parts"]] == keys[:2]
        kept = json.loads(s3.get_object(Bucket=BUCKET, Key=keys[1])["Body"].read())
        assert kept["phase"] == "end" and kept["complete"] and kept["object_id"] == obj
        window = kept["window"]

        mp4 = tmp_path / "clip.mp4"
        mp4.write_bytes(s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read())
        assert s3.head_object(Bucket=BUCKET, Key=keys[0])["ContentType"] == "video/mp4"
        with av.open(str(mp4)) as container:
            assert container.format.name.startswith("mov")
            stream = container.streams.video[0]
            times = [int(f.pts * f.time_base * 1000) for f in container.decode(stream)]
        in_window = [t for t in feed.times if window["from_ns"] <= t < window["to_ns"]]
        # every frame of the window, remuxed (no re-encode): from the key frame at or before its
        # start, so a few before it may lead in (a segment at most: each begins with a key frame)
        assert len(times) >= len(in_window)
        lead_in = [t for t in feed.times if t < window["from_ns"]]
        assert len(times) - len(in_window) <= len(lead_in)
        span_ms = (window["to_ns"] - window["from_ns"]) // 10**6
        assert times[-1] - times[0] >= span_ms - 200  # the whole window: about 3.5 s of a 25 fps feed
        # the MP4 was a staging copy: gone once up; the kept segments stay
        folders = list(root.glob("kept/*/*"))
        assert len(folders) == 2 and not any((f / "clip.mp4").exists() for f in folders)
        assert all(list(f.glob("*.mkv")) for f in folders)
        stats = daemons.stats("recorder")["uploads"]
        assert stats["queued"] == 6 and stats["uploaded"] == 6 and stats["manifests"] == 2


def test_a_clip_kept_but_never_queued_goes_at_the_next_start(daemons, zctx, tmp_path: Path, monkeypatch) -> None:
    """A recorder killed while it made a clip's MP4 leaves a complete, final kept clip that was
    never queued; so does one kept before ``clips`` was asked for. The next start queues it."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    root = tmp_path / "ring"
    feed, events = TimedFeed(zctx), Feed(zctx)
    with S3Server(tmp_path / "moto.log") as store:
        s3 = store.client()
        s3.create_bucket(Bucket=BUCKET)
        recorder = (f'subscribe = ["{feed.addr}"]\nevents = "{events.addr}"\nsegment = "1s"\npre = "500ms"\n'
                    'post = "500ms"\n')
        results = f'results = "{tcp()}"'
        path = write_config(tmp_path, store.endpoint, recorder, results, what='"snapshots"')  # no clips yet
        daemons.start("recorder", "recorder", "--config", str(path))
        for publisher in (feed, events):
            publisher.subscribed()
        feed.play(lambda: len(closed_rows(root)) >= 2)
        covered = wire.Event(id=event_id(time.time_ns(), "cam", "camera_covered"), type="camera_covered",
                             camera="cam", ts=time.time())
        events.send(wire.pack(covered))
        kept = root / "kept" / utc_day(covered.ts) / covered.id / "event.json"
        feed.play(lambda: kept.exists() and json.loads(kept.read_text())["complete"])
        assert daemons.stop("recorder") == 0
        assert not (root / "uploads.db").exists() and objects(s3) == {}

        write_config(tmp_path, store.endpoint, recorder, results)  # now clips: started again, no new event
        daemons.start("sink", "sink", "--config", str(path))
        daemons.start("recorder", "recorder", "--config", str(path))
        deadline = time.monotonic() + 60
        while not uploaded_events(tmp_path / "events.jsonl") and time.monotonic() < deadline:
            time.sleep(0.1)  # the store and the events file have no change notification to await
        told = uploaded_events(tmp_path / "events.jsonl")
        assert [u["of"] for u in told] == [covered.id]
        folder = f"site1/cam/{utc_day(covered.ts)}/{covered.id}.clip/"
        assert sorted(objects(s3)) == [f"{folder}00-clip.mp4", f"{folder}01-event.json", f"{folder}02-manifest.json"]
        assert daemons.stop("recorder") == 0
        assert daemons.stop("sink") == 0


def test_a_clip_whose_mp4_met_a_full_disk_goes_up_once_there_is_space(daemons, zctx, small_disk, tmp_path: Path,
                                                                      monkeypatch) -> None:
    """The disk fills between the recording of a kept clip and its MP4: the clip is counted and
    said once, and tried again as the recorder runs on, so space given back sends it up without a
    restart. The ring is on a small volume of its own (tests/conftest.small_disk)."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    disk = small_disk("48m")
    root = disk / "ring"
    feed, events = Feed(zctx, size=(320, 240)), Feed(zctx)  # noise: an MP4 too big for what is left
    port = free_port()
    with S3Server(tmp_path / "moto.log") as store:
        s3 = store.client()
        s3.create_bucket(Bucket=BUCKET)
        # one long file: the clip's window stays in the file being written until the camera ends
        path = write_config(tmp_path, store.endpoint, f'subscribe = ["{feed.addr}"]\nevents = "{events.addr}"\n'
                            f'segment = "60s"\npre = "2s"\npost = "2s"\nmin_free = "0"\n'
                            f'metrics_port = {port}\n', f'results = "{tcp()}"', ring=root)
        daemons.start("sink", "sink", "--config", str(path))
        recorder = daemons.start("recorder", "recorder", "--config", str(path))
        for publisher in (feed, events):
            publisher.subscribed()
        feed.play(lambda: len(rows(root)) >= 1 and feed.sent() >= 60)  # 2 s before the event
        covered = wire.Event(id=event_id(time.time_ns(), "cam", "camera_covered"), type="camera_covered",
                             camera="cam", ts=time.time())
        events.send(wire.pack(covered))
        feed.play(lambda: time.time() > covered.ts + 2.5)  # its window recorded, in the open file
        deadline = time.monotonic() + 60
        while metric(port, "written", camera="cam") < feed.sent():  # nothing left to write but the file's end
            assert time.monotonic() < deadline, "the recorder did not catch up"
            time.sleep(0.05)  # a metric has no change notification to await
        # room for the file's last second, its end, event.json and the index; not for 4 s of MP4
        filler = fill(disk, leave=3 << 19)
        feed.end()  # the camera ends: its file is closed and the kept clip completed
        kept = root / "kept" / utc_day(covered.ts) / covered.id
        deadline = time.monotonic() + 60
        while metric(port, "uploads", outcome="not_queued") < 1:
            assert recorder.poll() is None, "the recorder died on a full disk"
            assert time.monotonic() < deadline, "no MP4 failed: was the disk full?"
            time.sleep(0.1)
        assert json.loads((kept / "event.json").read_text())["complete"] and not (kept / "clip.mp4").exists()

        filler.unlink()
        deadline = time.monotonic() + 120
        while not uploaded_events(tmp_path / "events.jsonl") and time.monotonic() < deadline:
            time.sleep(0.1)  # the store and the events file have no change notification to await
        assert [u["of"] for u in uploaded_events(tmp_path / "events.jsonl")] == [covered.id]
        folder = f"site1/cam/{utc_day(covered.ts)}/{covered.id}.clip/"
        assert sorted(objects(s3)) == [f"{folder}00-clip.mp4", f"{folder}01-event.json", f"{folder}02-manifest.json"]
        assert recorder.poll() is None  # the same process: no restart was needed
        assert daemons.stop("recorder") == 0
        assert daemons.stop("sink") == 0
    stats = daemons.stats("recorder")["uploads"]
    assert stats["not_queued"] == 1 and stats["queued"] == 3 and stats["uploaded"] == 3


@pytest.mark.parametrize("how", ["check-config", "recorder"])
def test_clips_without_the_sinks_address_are_refused(tmp_path: Path, how: str) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:9", f'subscribe = ["{tcp()}"]\n', "")
    argv = ["check-config", str(path)] if how == "check-config" else ["recorder", "--config", str(path)]
    out = subprocess.run([sys.executable, "-m", "camwire", *argv], cwd=ROOT, capture_output=True, text=True,
                         env={**_env(), **ENV}, timeout=60)
    assert out.returncode == 2
    said = [line for line in (out.stderr + out.stdout).splitlines() if "--sink" in line]
    assert said and '[upload] what = ["clips"] needs the sink\'s results address' in said[0], out.stderr + out.stdout


def _env() -> dict[str, str]:
    import os
    return {k: v for k, v in os.environ.items() if k not in ENV}


class OneSegment:
    """A stand-in for the two reads of recorder.index.Index that ClipUploads.completed makes on
    the main loop (the tests above use a real index, filled by a real recorder): one segment for
    any keep. With write_clip held, it shows what waits for a remux and what does not."""

    def kept_segment_ids(self, event_id: str) -> set[int]:
        return {1}

    def overlapping(self, camera: str, from_ns: int, to_ns: int) -> list[Segment]:
        return [Segment(1, camera, from_ns, to_ns, "seg.mkv", "h264", 1, 1, 0, True)]


def test_the_main_loop_does_not_wait_for_a_clips_remux(tmp_path: Path, monkeypatch) -> None:
    started, release = threading.Event(), threading.Event()

    def held_clip(segments, root, start_ns, end_ns, out: Path, options=None) -> int:
        started.set()
        assert release.wait(60)
        out.write_bytes(b"mp4")
        return 1

    monkeypatch.setattr(uploads, "write_clip", held_clip)
    cfg = UploadConfig("http://127.0.0.1:9", BUCKET, what=("clips",), retry_max=60.0)  # a store never reached
    clips = uploads.ClipUploads(Uploader(cfg, tmp_path, Counters(), structlog.get_logger()), tmp_path,
                                OneSegment(), Counters(), structlog.get_logger())
    keeps, events = [], []
    for n in range(2):
        ts = time.time_ns() + n
        event = wire.Event(id=event_id(ts, "cam", "camera_covered", n), type="camera_covered", camera="cam",
                           ts=ts / 1e9)
        folder = tmp_path / "kept" / event.id
        folder.mkdir(parents=True)
        (folder / "event.json").write_bytes(msgspec.json.encode(event))
        keeps.append(Keep(event.id, "cam", ts - S, ts, f"kept/{event.id}", True, msgspec.to_builtins(event)))
        events.append(event)
    try:
        clips.completed(keeps[0])  # returns with the first MP4 being made ...
        assert started.wait(60)
        clips.completed(keeps[1])  # ... and so does the next: it waits its turn on the remux thread
        assert not (tmp_path / keeps[0].dir / "clip.mp4").exists()
        release.set()
        deadline = time.monotonic() + 60
        while not all(clips.uploader.queue.known(upload_id(e, "clip")) for e in events):
            assert time.monotonic() < deadline, "the clips were not queued"
            time.sleep(0.05)  # the queue has no notification to await
    finally:
        release.set()
        clips.close()
