"""Event media to object storage (common.upload), against a real S3 protocol server run
locally: moto's server mode (tests/s3_server.py) is an S3 protocol stand-in for AWS, MinIO or
Ceph, spoken to over loopback by boto3 exactly as those are. The sink runs as a real process
from a camwire.toml; results reach it over ZeroMQ as a worker's would."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from camwire.sink.store.disk import WriteErrors
from camwire.sink.store.snapshots import SnapshotStore
from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter
from camwire.common.paths import utc_day
from camwire.common.pixels import Pixels, decode_jpeg, encode_jpeg, pack_pixels
from camwire.common.upload import (UploadConfig, Uploader, backoff, index_width, object_key, snapshot_parts,
                           upload_from_config)
from conftest import ROOT, free_port, wait_log
from s3_server import ACCESS_KEY, SECRET_KEY, S3Server

BUCKET = "camwire-test"
SIZE = (160, 120)
FRAME = np.random.default_rng(1).integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
JPEG = encode_jpeg(FRAME)
PIXELS, IMAGE = pack_pixels(FRAME)  # the frame as a worker's result carries it
ENV = {"S3_ACCESS_KEY": ACCESS_KEY, "S3_SECRET_KEY": SECRET_KEY}


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def bind(self, **_kw):
        return self

    def __getattr__(self, level: str):
        return lambda event, **kw: self.lines.append((event, kw))


def wait(predicate, timeout: float = 60.0, what: str = "a state"):
    """``predicate()``'s value once truthy (the bucket and SQLite have no change notification to await)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"never came: {what}")


def objects(s3, bucket: str = BUCKET) -> dict[str, dict]:
    try:
        return {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    except Exception:  # noqa: BLE001 - the store is down or the bucket not there yet
        return {}


def uploaded_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [e for line in path.read_text().splitlines() if (e := json.loads(line))["type"] == "uploaded"]


def queue_rows(data: Path) -> list[tuple]:
    try:
        with sqlite3.connect(data / "uploads.db") as db:
            return db.execute("SELECT event, part, state, attempts, error FROM objects").fetchall()
    except sqlite3.Error:
        return []


# -- pure decisions and the [upload] table ---------------------------------------------------------

def test_backoff_doubles_up_to_its_cap_and_keys_carry_the_order() -> None:
    assert [backoff(n, 10.0) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    ev = wire.Event(id="20261121T051900.000000001Z-door-camera_covered", type="camera_covered", camera="door",
                    ts=1_795_000_000.0)
    keys = [object_key("site", ev, i, name) for i, name in enumerate(["snapshot.jpg", "clean.jpg", "manifest.json"])]
    assert keys == sorted(keys)
    assert keys[0] == f"site/door/{utc_day(ev.ts)}/{ev.id}/00-snapshot.jpg"
    assert keys[2].endswith("/02-manifest.json")


def write_config(tmp: Path, upload: str, sink: str = "") -> Path:
    path = tmp / "camwire.toml"
    path.write_text(f"[sink]\n{sink}\n[upload]\n{upload}\n")
    return path


@pytest.mark.parametrize("upload, line, says", [
    ('endpoint = "http://127.0.0.1:9"\nbucket = "ok-bucket"\nbukcet = "x"\n', 6, "unknown key 'bukcet'"),
    ('endpoint = "ftp://127.0.0.1:9"\nbucket = "ok-bucket"\n', 4, "http:// or https://"),
    ('endpoint = "http://127.0.0.1:9"\nbucket = "Bad_Bucket"\n', 5, "bucket name"),
    ('endpoint = "http://127.0.0.1:9"\nbucket = "ok-bucket"\naccess_key = "AKIA123"\nsecret_key = "${S3_SECRET_KEY}"\n',
     6, "never written in the file"),
    ('endpoint = "http://127.0.0.1:9"\nbucket = "ok-bucket"\naccess_key = "${NOT_SET_ANYWHERE}"\n'
     'secret_key = "${S3_SECRET_KEY}"\n', 6, "NOT_SET_ANYWHERE"),
    ('endpoint = "http://127.0.0.1:9"\nbucket = "ok-bucket"\nwhat = ["movies"]\n', 6, "'movies' is not uploaded"),
    ('endpoint = "http://127.0.0.1:9"\nbucket = "ok-bucket"\nretry_for = "soon"\n', 6, "upload.retry_for"),
])
def test_check_config_refuses_a_bad_upload_table_at_its_line(tmp_path: Path, upload: str, line: int,
                                                             says: str) -> None:
    path = write_config(tmp_path, upload, sink='data_dir = "data"')
    out = subprocess.run([sys.executable, "-m", "camwire", "check-config", str(path)], cwd=ROOT,
                         capture_output=True, text=True, env={**_env(), **ENV}, timeout=60)
    assert out.returncode == 2
    first = [ln for ln in out.stderr.splitlines() + out.stdout.splitlines() if f"{path}:{line}:" in ln]
    assert first and says in first[0], out.stderr + out.stdout
    assert "AKIA123" not in out.stderr + out.stdout


def test_upload_needs_the_sinks_data_dir_and_secrets_never_show(tmp_path: Path, monkeypatch) -> None:
    path = write_config(tmp_path, 'endpoint = "http://127.0.0.1:9"\nbucket = "ok-bucket"\n'
                                  'access_key = "${S3_ACCESS_KEY}"\nsecret_key = "${S3_SECRET_KEY}"\n',
                        sink='events = "events.jsonl"')
    out = subprocess.run([sys.executable, "-m", "camwire", "check-config", str(path)], cwd=ROOT,
                         capture_output=True, text=True, env={**_env(), **ENV, "S3_SECRET_KEY": "s3cr3t-value"},
                         timeout=60)
    assert out.returncode == 2 and "[upload] needs the sink's --data-dir" in out.stderr
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    cfg = upload_from_config({"upload": {"endpoint": "http://h:1", "bucket": "abc", "access_key": "${S3_ACCESS_KEY}",
                                         "secret_key": "${S3_SECRET_KEY}"}})
    assert ACCESS_KEY not in repr(cfg) and SECRET_KEY not in repr(cfg)
    assert "s3cr3t-value" not in out.stderr + out.stdout


def test_upload_keys_come_from_the_env_file_beside_the_config(tmp_path: Path) -> None:
    """As every ${VAR} of camwire.toml: the environment first, then the .env beside the file (a
    unit's working folder is not the config's)."""
    path = write_config(tmp_path, 'endpoint = "http://127.0.0.1:9"\nbucket = "ok-bucket"\n'
                                  'access_key = "${S3_ACCESS_KEY}"\nsecret_key = "${S3_SECRET_KEY}"\n',
                        sink='data_dir = "data"')
    (tmp_path / ".env").write_text(f"S3_ACCESS_KEY={ACCESS_KEY}\nS3_SECRET_KEY={SECRET_KEY}\n")
    code = ("import camwire.cli, sys; from camwire.common.config import load_config; "
            "u = load_config(sys.argv[1]).parts['upload']; print(u.access_key == sys.argv[2] and u.secret_key == sys.argv[3])")
    out = subprocess.run([sys.executable, "-c", code, str(path), ACCESS_KEY, SECRET_KEY], cwd=ROOT,
                         capture_output=True, text=True, env=_env(), timeout=60)
    assert out.stdout.strip() == "True", out.stderr
    check = subprocess.run([sys.executable, "-m", "camwire", "check-config", str(path)], cwd=ROOT,
                           capture_output=True, text=True, env=_env(), timeout=60)
    assert check.returncode == 0, check.stderr


def _env() -> dict[str, str]:
    import os
    return {k: v for k, v in os.environ.items() if k not in ENV}


# -- the uploader on its own: an object's three files and its manifest -----------------------------

def test_an_events_parts_go_in_order_and_the_manifest_last(tmp_path: Path) -> None:
    with S3Server(tmp_path / "moto.log") as s3server:
        s3 = s3server.client()
        s3.create_bucket(Bucket=BUCKET)
        counters = Counters()
        store = SnapshotStore(tmp_path / "data" / "snapshots", counters, WriteErrors(counters, RepeatLimiter(_Log())))
        ev = wire.Event(id="20261121T051900.000000001Z-yard-object", type="object", camera="yard",
                        ts=time.time(), phase="start", label="person", object_id="x")
        ev = wire.Event(**{**{f: getattr(ev, f) for f in ev.__struct_fields__}, "object_id": ev.id})
        import msgspec
        ev = msgspec.structs.replace(ev, snapshot=store.save(ev, JPEG, SIZE, (10, 10, 80, 90), "person"))
        cfg = UploadConfig(s3server.endpoint, BUCKET, "site", ACCESS_KEY, SECRET_KEY, workers=4)
        up = Uploader(cfg, tmp_path / "data", counters, _Log())
        try:
            assert up.enqueue(ev, msgspec.json.encode(ev), snapshot_parts(tmp_path / "data", ev))
            [told] = wait(up.take, what="the uploaded event")
        finally:
            up.close()
        found = objects(s3)
        names = [k.rsplit("/", 1)[1] for k in sorted(found)]
        assert names == ["00-snapshot.jpg", "01-clean.jpg", "02-thumb.jpg", "03-manifest.json"]
        manifest_key = sorted(found)[-1]
        assert all(found[k]["LastModified"] <= found[manifest_key]["LastModified"] for k in found)
        manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
        assert manifest["event"]["id"] == ev.id
        assert [p["key"] for p in manifest["parts"]] == sorted(found)[:3]
        assert s3.get_object(Bucket=BUCKET, Key=sorted(found)[1])["Body"].read() == JPEG  # the clean frame
        assert told.type == "uploaded" and told.of == ev.id and told.camera == "yard"
        assert told.urls == [f"{s3server.endpoint}/{BUCKET}/{k}" for k in sorted(found)]
        assert counters.get("uploads", "uploaded") == 4 and counters.get("uploads", "manifests") == 1


# -- the sink, a real process from camwire.toml -------------------------------------------------------

class Results:
    """Pushes results to the sink as a worker would (with the frame's pixels): each flips the camera
    covered/uncovered, so each is an event with a snapshot."""

    def __init__(self, ctx: zmq.Context, addr: str, camera: str) -> None:
        self.sock = ctx.socket(zmq.PUSH)
        self.sock.linger = 1000
        self.sock.connect(addr)
        self.camera, self.seq = camera, 0

    def send(self, n: int) -> None:
        for _ in range(n):
            self.seq += 1
            r = wire.Result(camera=self.camera, seq=self.seq, ts_ns=time.time_ns(), width=SIZE[0], height=SIZE[1],
                            flags=wire.Flags(covered=self.seq % 2 == 1), worker="w1", detector="covered",
                            image=IMAGE)
            self.sock.send_multipart([wire.pack(r), PIXELS])

    def close(self) -> None:
        self.sock.close()


def sink_config(tmp: Path, endpoint: str, bucket: str = BUCKET) -> tuple[Path, str]:
    bind = f"tcp://127.0.0.1:{free_port()}"
    path = tmp / "camwire.toml"
    path.write_text(f"""
[sink]
bind = "{bind}"
events = "{tmp / 'events.jsonl'}"
data_dir = "{tmp / 'data'}"

[upload]
endpoint = "{endpoint}"
bucket = "{bucket}"
prefix = "site1"
access_key = "${{S3_ACCESS_KEY}}"
secret_key = "${{S3_SECRET_KEY}}"
what = ["snapshots"]
retry_for = "1h"
retry_max = "1s"
workers = 8
""")
    return path, bind


def start_sink(daemons, path: Path):
    import os
    os.environ.update(ENV)  # the sink's ${VAR}s, as a service manager would set them
    return daemons.start("sink", "sink", "--config", str(path))


def test_sink_uploads_and_an_outage_mid_run_loses_nothing(daemons, zctx, tmp_path: Path) -> None:
    store = S3Server(tmp_path / "moto.log").start()
    try:
        s3 = store.client()
        s3.create_bucket(Bucket=BUCKET)
        path, bind = sink_config(tmp_path, store.endpoint)
        start_sink(daemons, path)
        results = Results(zctx, bind, "gate")
        events_file = tmp_path / "events.jsonl"
        results.send(4)
        told = wait(lambda: len(u := uploaded_events(events_file)) >= 4 and u, what="4 uploaded events")
        found = objects(s3)
        assert len(found) == 8  # a snapshot and a manifest each
        for u in told:
            keys = [url.split(f"/{BUCKET}/", 1)[1] for url in u["urls"]]
            assert keys[-1].endswith("01-manifest.json") and keys[0].endswith("00-snapshot.jpg")
            assert set(keys) <= set(found)
            assert found[keys[0]]["LastModified"] <= found[keys[-1]]["LastModified"]
            assert keys[0].startswith("site1/gate/")
        originals = {e["id"] for line in events_file.read_text().splitlines()
                     if (e := json.loads(line))["type"] == "camera_covered" or e["type"] == "camera_uncovered"}
        assert {u["of"] for u in told} == originals

        # the store goes away with events coming, then comes back empty on the same port
        store.stop()
        results.send(6)
        wait(lambda: sum(r[3] > 0 and r[2] == "pending" for r in queue_rows(tmp_path / "data")) >= 6,
             what="retries while the store is down")
        store.start()
        s3.create_bucket(Bucket=BUCKET)  # moto keeps nothing across a restart
        wait(lambda: len(uploaded_events(events_file)) >= 10, what="the 6 events after the outage")
        assert len(objects(s3)) == 12
        results.close()
        assert daemons.stop("sink") == 0
        stats = daemons.stats("sink")["uploads"]
        assert stats["queued"] == 20 and stats["uploaded"] == 20 and stats["manifests"] == 10
        assert stats["retried"] >= 6 and "failed" not in stats
        assert all(r[2] == "done" for r in queue_rows(tmp_path / "data"))
    finally:
        store.stop()


def test_a_restart_with_uploads_pending_resumes_them(daemons, zctx, tmp_path: Path) -> None:
    store = S3Server(tmp_path / "moto.log")  # down to begin with
    path, bind = sink_config(tmp_path, store.endpoint)
    start_sink(daemons, path)
    results = Results(zctx, bind, "door")
    results.send(3)
    wait(lambda: len(queue_rows(tmp_path / "data")) == 6, what="6 queued objects")
    results.close()
    assert daemons.stop("sink") == 0
    assert daemons.stats("sink")["uploads"].get("uploaded", 0) == 0
    store.start()
    try:
        s3 = store.client()
        s3.create_bucket(Bucket=BUCKET)
        start_sink(daemons, path)
        told = wait(lambda: len(u := uploaded_events(tmp_path / "events.jsonl")) >= 3 and u, what="resumed uploads")
        assert len(objects(s3)) == 6
        assert {u["camera"] for u in told} == {"door"}
        assert daemons.stop("sink") == 0
        assert daemons.stats("sink")["uploads"]["uploaded"] == 6
    finally:
        store.stop()


def test_a_missing_bucket_is_counted_and_said_once(daemons, zctx, tmp_path: Path) -> None:
    with S3Server(tmp_path / "moto.log") as store:
        path, bind = sink_config(tmp_path, store.endpoint, bucket="no-such-bucket")
        start_sink(daemons, path)
        results = Results(zctx, bind, "lane")
        results.send(2)
        wait(lambda: sum(r[3] >= 2 for r in queue_rows(tmp_path / "data")) >= 2, what="retries")
        said = wait_log(tmp_path / "sink.log", lambda rec: rec.get("event") == "upload failed; will retry")
        assert said["error"].startswith("NoSuchBucket")
        results.close()
        assert daemons.stop("sink") == 0
        stats = daemons.stats("sink")["uploads"]
        assert stats["retried"] >= 2 and stats.get("uploaded", 0) == 0
        log = (tmp_path / "sink.log").read_text()
        assert log.count("upload failed; will retry") == 1  # once a minute at most, however many tries
        assert SECRET_KEY not in log and ACCESS_KEY not in log


# -- every frame of an object (sink.store.frames) ------------------------------------------------------

def test_keys_sort_in_order_however_many_parts() -> None:
    ev = wire.Event(id="20261121T051900.000000001Z-yard-object", type="object", camera="yard", ts=1_795_000_000.0)
    width = index_width(120)
    keys = [object_key("", ev, i, f"frame-{i}.jpg", "frames", width) for i in range(120)]
    keys.append(object_key("", ev, 120, "manifest.json", "frames", width))
    assert width == 3 and keys == sorted(keys)
    assert keys[0] == f"yard/{utc_day(ev.ts)}/{ev.id}.frames/000-frame-0.jpg"


def pixels(seq: int) -> Pixels:
    """A tiny frame's pixels as a result brings them, its grey level 10 x seq."""
    packed, image = pack_pixels(np.full((6, 8, 3), 10 * seq, np.uint8))
    return Pixels(packed, *image)


def test_frames_are_held_until_the_start_capped_and_swept(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from camwire.sink.store.frames import Frames

    counters = Counters()
    frames = Frames(tmp_path / "frames", counters, WriteErrors(counters, RepeatLimiter(_Log())), min_free=0.0, cap=4)
    walker = SimpleNamespace(object_id=None)
    for seq in range(1, 7):
        if seq == 2:  # seen twice before its start (min_frames = 2): both held, then written
            walker.object_id = "obj-1"
        frames.observe([(walker, seq, pixels(seq))], [])
    assert sorted(p.name for p in (tmp_path / "frames" / "obj-1").iterdir()) == ["1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    assert counters.get("uploads", "frames_capped") == 2
    parts = frames.end("obj-1")
    assert [p.name for p in parts] == ["frame-1.jpg", "frame-2.jpg", "frame-3.jpg", "frame-4.jpg"]
    assert all(p.remove and p.content_type == "image/jpeg" for p in parts)
    assert abs(int(decode_jpeg(parts[2].path.read_bytes(), size=(8, 6))[0, 0, 0]) - 30) <= 2  # seq 3's grey
    assert counters.get("snapshot_pixels", "encoded") == 4  # the frames written, and no other
    # one that ends unstarted is forgotten, its held frames never written
    passer = SimpleNamespace(object_id=None)
    frames.observe([(passer, 7, pixels(7))], [])
    frames.observe([], [passer])
    assert id(passer) not in frames.live
    # a sink killed: another object's frames never ended; at the next start they go, queued ones stay
    other = SimpleNamespace(object_id="obj-2")
    frames.observe([(other, 9, pixels(9))], [])
    assert Frames(tmp_path / "frames", counters, WriteErrors(counters, RepeatLimiter(_Log()))).sweep(
        {str(p.path) for p in parts}) == 1
    assert not (tmp_path / "frames" / "obj-2").exists() and all(p.path.exists() for p in parts)


class Walker:
    """Pushes results as a worker would: one person walking across the frame, each frame's pixels
    distinct, in seq order with ``prev`` named (so the sink's reorder window releases each at once)."""

    def __init__(self, ctx: zmq.Context, addr: str, camera: str) -> None:
        self.sock = ctx.socket(zmq.PUSH)
        self.sock.linger = 1000
        self.sock.connect(addr)
        self.camera, self.sent = camera, []

    def walk(self, n: int) -> None:
        rng = np.random.default_rng(3)
        for seq in range(n):
            frame = rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
            packed, image = pack_pixels(frame)
            x = 20.0 + seq * 1.0  # a walk: it starts once it has moved (sink.tracking)
            r = wire.Result(camera=self.camera, seq=seq, ts_ns=time.time_ns(), width=SIZE[0], height=SIZE[1],
                            worker="w1", detector="objects", prev=seq - 1, image=image,
                            detections=[wire.Detection("person", 0.9, (x, 30.0, x + 30.0, 100.0))])
            self.sock.send_multipart([wire.pack(r), packed])
            self.sent.append(frame)

    def end(self) -> None:
        n = len(self.sent)
        self.sock.send(wire.pack(wire.Eos(camera=self.camera, sent=n, last_seq=n - 1, results=n)))

    def close(self) -> None:
        self.sock.close()


def test_an_objects_every_frame_goes_in_order_at_its_end(daemons, zctx, tmp_path: Path) -> None:
    n = 101  # more than 99 parts: three-digit keys
    with S3Server(tmp_path / "moto.log") as store:
        s3 = store.client()
        s3.create_bucket(Bucket=BUCKET)
        path, bind = sink_config(tmp_path, store.endpoint)
        path.write_text(path.read_text().replace('what = ["snapshots"]', 'what = ["frames"]'))
        start_sink(daemons, path)
        walker = Walker(zctx, bind, "lane")
        walker.walk(n)
        frames_dir = tmp_path / "data" / "frames"
        wait(lambda: frames_dir.is_dir() and len(list(frames_dir.glob("*/*.jpg"))) == n, what="the frames on disk")
        walker.end()
        [told] = wait(lambda: uploaded_events(tmp_path / "events.jsonl"), what="the uploaded event")
        events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
        [end] = [e for e in events if e["type"] == "object" and e["phase"] == "end"]
        assert told["of"] == end["id"] and told["object_id"] == end["object_id"]
        keys = [url.split(f"/{BUCKET}/", 1)[1] for url in told["urls"]]
        folder = f"site1/lane/{utc_day(end['ts'])}/{end['id']}.frames/"
        assert keys == [f"{folder}{i:03d}-frame-{i}.jpg" for i in range(n)] + [f"{folder}{n:03d}-manifest.json"]
        found = objects(s3)
        assert sorted(found) == keys  # nothing else: no snapshots were asked for
        assert all(found[k]["LastModified"] <= found[keys[-1]]["LastModified"] for k in keys)
        for i in (0, 57, n - 1):  # each the JPEG the sink made of that frame's pixels
            got = decode_jpeg(s3.get_object(Bucket=BUCKET, Key=keys[i])["Body"].read(), size=SIZE).astype(int)
            assert np.abs(got - walker.sent[i]).mean() < np.abs(got - walker.sent[i - 1]).mean()
        manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=keys[-1])["Body"].read())
        assert manifest["event"]["id"] == end["id"] and [p["key"] for p in manifest["parts"]] == keys[:-1]
        wait(lambda: not frames_dir.exists() or not any(frames_dir.iterdir()), what="the frames deleted once up")
        walker.close()
        assert daemons.stop("sink") == 0
        stats = daemons.stats("sink")["uploads"]
        assert stats["queued"] == n + 1 and stats["uploaded"] == n + 1 and stats["manifests"] == 1
        assert "snapshots" not in json.dumps(stats)


def test_the_sink_emits_the_recorders_uploaded_events_and_refuses_other_events(daemons, zctx,
                                                                                tmp_path: Path) -> None:
    bind = f"tcp://127.0.0.1:{free_port()}"
    daemons.start("sink", "sink", "--bind", bind, "--events", str(tmp_path / "events.jsonl"))
    push = zctx.socket(zmq.PUSH)
    push.linger = 1000
    push.connect(bind)
    now = time.time()
    told = wire.Event(id=f"{int(now)}-cam-uploaded", type="uploaded", camera="cam", ts=now, of="x-end",
                      object_id="x", urls=["http://s3/b/k/00-clip.mp4", "http://s3/b/k/02-manifest.json"])
    push.send(wire.pack(wire.Event(id="bad", type="object", camera="cam", ts=now, phase="end")))
    push.send(wire.pack(told))
    [got] = wait(lambda: uploaded_events(tmp_path / "events.jsonl"), what="the uploaded event emitted")
    assert got["of"] == "x-end" and got["urls"] == told.urls
    push.close()
    assert daemons.stop("sink") == 0
    stats = daemons.stats("sink")
    assert stats["malformed"] == {"unexpected_kind": 1}
    assert "object" not in stats.get("events", {})
