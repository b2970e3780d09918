"""The pipeline end to end: every daemon a separate process, joined over TCP loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import msgpack
import numpy as np
import zmq

from camwire.sample import make_sample_clip
from camwire.common import pixels, wire
from conftest import free_port, shared_clip, tcp


def push_garbage(zctx: zmq.Context, addr: str) -> None:
    """Malformed messages a broken or hostile sender could push; each must be counted and dropped."""
    sock = zctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.connect(addr)
    good_head = pixels.encode_frame(wire.FrameHeader(camera="x", seq=0, ts_ns=0, width=4, height=4),
                                   np.zeros((4, 4, 3), np.uint8))[0]
    sock.send(b"\xc1not msgpack")
    sock.send_multipart([msgpack.packb({"v": 42, "kind": "frame"}), b""])
    sock.send_multipart([good_head, b"short"])
    sock.send_multipart([good_head])
    sock.close()


def test_generated_clip_gives_motion_and_covered_events(pipeline_factory, daemons, zctx, sample_clip: Path) -> None:
    p = pipeline_factory(until="gen")
    p.worker("worker-1")
    p.worker("worker-2")
    push_garbage(zctx, p.frontend)
    p.extractor("gen", str(sample_clip))
    assert daemons.wait("sink", timeout=120) == 0  # it exits once every result of "gen" is in
    assert daemons.wait("extractor-gen") == 0
    for name in ("worker-1", "worker-2", "ventilator"):
        assert daemons.stop(name) == 0

    extractor = daemons.stats("extractor-gen")["gen"]
    vent, sink = daemons.stats("ventilator"), daemons.stats("sink")
    assert extractor["decoded"] == extractor["sent"] == 300  # a file is never dropped: it waits
    assert sink["results"]["gen"] == 300
    assert vent["malformed"] == {"bad_msgpack": 1, "bad_version": 1, "bad_size": 1, "bad_part_count": 1}
    # two workers both received work
    assert daemons.stats("worker-1")["processed"]["gen"] > 0
    assert daemons.stats("worker-2")["processed"]["gen"] > 0

    events = p.events_written()
    kinds = [e["type"] for e in events]
    assert kinds.count("camera_covered") == 1 and kinds.count("camera_uncovered") == 1
    assert kinds.count("camera_online") == 1 and kinds.count("motion_start") >= 1
    # a file keeps its own timeline: capture time = time opened + pts, for every frame
    assert len({round(e["ts"] - e["seq"] / 25, 3) for e in events if e["seq"] is not None}) == 1
    covered = next(e for e in events if e["type"] == "camera_covered")
    uncovered = next(e for e in events if e["type"] == "camera_uncovered")
    assert 5.0 <= covered["seq"] / 25 <= 6.0 and 8.0 <= uncovered["seq"] / 25 <= 9.0  # covered 5 s to 8 s
    assert covered["snapshot"].startswith("snapshots/gen/")  # relative to the data dir, never a host path
    assert (p.data_dir / covered["snapshot"]).is_file()
    beside = json.loads((p.data_dir / covered["snapshot"]).with_suffix(".json").read_text())
    assert beside["detections"] == covered["detections"]
    motion = next(e for e in events if e["type"] == "motion_start")  # the extractor's, where it moved
    assert motion["detections"]
    for det in motion["detections"]:
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360 and det["label"] == "motion"


def test_real_clip_gives_motion_events(pipeline_factory, daemons) -> None:
    clip = shared_clip("car-detection.mp4")
    p = pipeline_factory(until="street")
    p.worker("worker-1", "covered")
    p.extractor("street", str(clip), extra=("--every", "2", "--detect", "always"))
    assert daemons.wait("sink", timeout=120) == 0
    assert daemons.wait("extractor-street") == 0
    extractor = daemons.stats("extractor-street")["street"]
    assert extractor["decoded"] == 377 and extractor["sent"] == 189
    assert daemons.stats("sink")["results"]["street"] == 189
    motion = [e for e in p.events_written() if e["type"] == "motion_start"]
    assert len(motion) >= 1  # cars pass all through the clip
    assert all(0 <= d["box"][2] <= 768 and 0 <= d["box"][3] <= 432 for e in motion for d in e["detections"])


def test_workers_join_mid_run_and_a_killed_worker_costs_only_its_in_flight_frame(
        pipeline_factory, daemons, sample_clip: Path) -> None:
    p = pipeline_factory(until="live")
    p.worker("worker-1")
    p.worker("worker-2")
    p.extractor("live", str(sample_clip), extra=("--realtime",))  # paced like a camera: 12 s
    p.events.wait_type("motion_start")

    p.worker("worker-3")  # started mid-run: it gets work as soon as it asks
    p.events.wait_type("camera_covered")  # 5 s into the clip

    daemons.procs["worker-1"].send_signal(signal.SIGKILL)
    daemons.wait("worker-1")
    since = len(p.events.seen)
    after = p.events.wait_type("camera_uncovered", since=since)  # 8 s in: the rest carry on
    assert after["worker"] in ("worker-2", "worker-3")

    assert daemons.wait("sink", timeout=120) == 0
    assert daemons.wait("extractor-live") == 0
    for name in ("worker-2", "worker-3", "ventilator"):
        assert daemons.stop(name) == 0
    sent = daemons.stats("extractor-live")["live"]["sent"]
    vent, sink = daemons.stats("ventilator"), daemons.stats("sink")
    lost = vent.get("dropped", {}).get("live", {}).get("worker_lost", 0)
    superseded = vent.get("dropped", {}).get("live", {}).get("superseded", 0)
    assert lost <= 1  # --batch 1: a worker holds one frame at a time
    assert vent["received"]["live"] == sent
    assert vent["dispatched"]["live"] == vent["completed"]["live"] + lost
    assert sent == vent["dispatched"]["live"] + superseded
    assert sink["results"]["live"] == vent["completed"]["live"]
    assert vent["workers_forgotten"]["unreachable"] + vent["workers_forgotten"].get("heartbeat", 0) >= 1
    assert daemons.stats("worker-3")["processed"]["live"] > 0


def test_camwire_run_once_with_stats(tmp_path: Path, sample_clip: Path) -> None:
    stats = tmp_path / "stats.json"
    events = tmp_path / "events.jsonl"
    out = subprocess.run([sys.executable, "-m", "camwire", "run", "--camera", f"a={sample_clip}",
                          "--camera", f"b={sample_clip}", "--detector", "covered", "--workers", "2",
                          "--every", "2", "--once", "--events", str(events), "--stats", str(stats)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(stats.read_text())
    for cam in ("a", "b"):
        assert data["extractor"][cam]["decoded"] == 300 and data["extractor"][cam]["sent"] == 150
        assert data["sink"]["results"][cam] == 150
    assert sum(sum(w["processed"].values()) for w in data["classifier"].values()) == 300
    assert data["sink"]["events"]["camera_covered"] == 2
    assert "camwire run summary" in out.stdout


def test_fallback_source_is_used_when_the_first_fails(pipeline_factory, daemons, sample_clip: Path) -> None:
    p = pipeline_factory(until="lobby")
    p.worker("worker-1", "covered")
    dead = f"rtsp://user:secret@127.0.0.1:{free_port()}/nothing-here"
    p.extractor("lobby", dead, str(sample_clip), extra=("--open-timeout", "2", "--every", "5"))
    offline = p.events.wait_type("camera_offline")
    assert "secret" not in json.dumps(offline)  # a password never reaches an event ...
    assert daemons.wait("sink", timeout=120) == 0
    assert daemons.wait("extractor-lobby") == 0
    assert daemons.stats("extractor-lobby")["lobby"]["sent"] == 60
    log = (daemons.tmp / "extractor-lobby.log").read_text()
    assert "trying fallback source" in log and "secret" not in log  # ... or a log line


def test_extractor_drops_and_counts_instead_of_blocking(daemons, tmp_path: Path, zctx) -> None:
    """Nobody reads the push socket: a live source keeps decoding and counts every drop."""
    clip = tmp_path / "short.mp4"
    make_sample_clip(clip, seconds=2, covered=None)
    publish = tcp()
    sub = zctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(publish)
    daemons.start("extractor", "extractor", "--camera", "c", "--source", str(clip), "--push", tcp(),
                  "--realtime", "--publish", publish)
    seqs = []
    while sub.poll(20_000) and len(seqs) < 10:
        parts = sub.recv_multipart()
        if not isinstance(wire.unpack(parts[0]), wire.FrameHeader):
            continue  # the camera's status messages go to the recorder too
        header, image = pixels.decode_frame(parts)
        assert header.enc == "lz4" and image.shape == (360, 640, 3)
        seqs.append(header.seq)
    assert seqs == list(range(seqs[0], seqs[0] + 10))  # every decoded frame is published, in order
    assert daemons.wait("extractor", timeout=60) == 0
    stats = daemons.stats("extractor")["c"]
    assert stats["decoded"] == 50
    # (status messages may take the two queue places before any frame: then none is sent)
    assert stats.get("sent", 0) + stats["dropped"]["hwm"] == 50 and stats["dropped"]["hwm"] > 0


def test_a_covered_lens_is_reported_while_the_motion_gate_holds_frames_back(pipeline_factory, daemons,
                                                                            tmp_path: Path) -> None:
    """A still scene, the lens covered from 4 s to 40 s, sampled at 1 fps with the default
    ``detect = "motion"``: covering and uncovering are motion, which opens the gate long enough for
    the covered worker's frames; the still stretch between is held back (only heartbeats go)."""
    clip = tmp_path / "still.mp4"
    make_sample_clip(clip, seconds=48, fps=5, width=320, height=180, covered=(4.0, 40.0), moving=False)
    p = pipeline_factory(until="still")
    p.worker("worker-1")
    p.extractor("still", str(clip), extra=("--fps", "1"))
    assert daemons.wait("sink", timeout=120) == 0
    assert daemons.wait("extractor-still") == 0
    stats = daemons.stats("extractor-still")["still"]
    assert stats["skipped"]["no_motion"] > 20  # the gate was shut over the still, covered stretch
    events = p.events_written()
    covered = [e["seq"] / 5 for e in events if e["type"] == "camera_covered"]
    uncovered = [e["seq"] / 5 for e in events if e["type"] == "camera_uncovered"]
    assert len(covered) == 1 and len(uncovered) == 1
    # both within the motion window the change itself opens (5 frames at 1 fps), not a heartbeat's wait
    assert 4.0 <= covered[0] <= 10.0 and 40.0 <= uncovered[0] <= 46.0
