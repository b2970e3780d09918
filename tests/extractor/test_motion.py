"""Motion seen by the extractor in every frame, and the gate it opens to the pool: real extractor
processes over TCP on a generated clip with a still stretch, a moving one and a parked object;
then the whole pipeline, whose sink turns it into one motion_start and one motion_end, and a real
Mosquitto that gets ON then OFF, retained.

The clip (10 fps, 320x180, 12 s): the scene alone for 3 s (frames 0-29), a box driving across it
for 3 s (frames 30-59), then the box parked where it stopped (frames 60-119). Every run of the
extractor here uses --motion-off-delay 1s and --motion-heartbeat 2s, and the decisions are made
on the clip's own timeline, so what is sent does not depend on how fast anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import pytest
import zmq

from camwire.sample import background
from camwire.common import wire
from conftest import ROOT, tcp
from mqtt import Subscriber

FPS, W, H, FRAMES = 10, 320, 180, 120
MOVE_FROM, MOVE_TO = 30, 60  # frames in which the box drives
BOX_W, BOX_H, BOX_Y = 40, 30, 100
MOTION = ("--motion-off-delay", "1s", "--motion-heartbeat", "2s", "--shm", "off")  # the test reads the socket alone
# a band across the frame over the box's path, in fractions of the frame
PATH_MASK = "[[0.0, 0.45], [1.0, 0.45], [1.0, 0.85], [0.0, 0.85]]"


def box_x(i: int) -> int:
    return 20 + 6 * (min(i, MOVE_TO - 1) - MOVE_FROM)


@pytest.fixture(scope="module")
def drive_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("motion") / "drive.mp4"
    base = background(W, H)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        stream.options = {"preset": "veryfast", "crf": "20", "bframes": "0"}
        for i in range(FRAMES):
            img = base.copy()
            if i >= MOVE_FROM:
                x = box_x(i)
                cv2.rectangle(img, (x, BOX_Y), (x + BOX_W, BOX_Y + BOX_H), (20, 220, 250), -1)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def run_extractor(zctx: zmq.Context, tmp: Path, clip: Path, *extra: str) -> tuple[list, list, dict]:
    """An extractor process reading ``clip`` as fast as the test takes it; returns the frame
    headers and Motion messages it pushed (in order) and its --stats for the camera."""
    addr, stats = tcp(), tmp / f"stats-{len(list(tmp.iterdir()))}.json"
    pull = zctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(addr)
    proc = subprocess.Popen([sys.executable, "-m", "camwire", "extractor", "--camera", "cam", "--source", str(clip),
                             "--push", addr, "--stats", str(stats), *MOTION, *extra], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    headers, motion = [], []
    try:
        while True:
            assert pull.poll(60_000), "the extractor sent nothing for 60 s"
            parts = pull.recv_multipart()
            msg = wire.peek_frame(parts) if len(parts) == 2 else wire.unpack(parts[0])
            if isinstance(msg, wire.FrameHeader):
                headers.append(msg)
            elif isinstance(msg, wire.Motion):
                motion.append(msg)
            elif isinstance(msg, wire.Eos):
                break
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        pull.close()
    return headers, motion, json.loads(stats.read_text())["cam"]


def test_always_sends_every_frame(zctx, tmp_path: Path, drive_clip: Path) -> None:
    headers, motion, stats = run_extractor(zctx, tmp_path, drive_clip, "--detect", "always")
    assert [h.seq for h in headers] == list(range(FRAMES))
    assert stats["decoded"] == stats["sent"] == FRAMES and "skipped" not in stats
    assert [m.active for m in motion] == [True, False]  # motion is told with either setting


def test_motion_gates_the_frames_and_says_where(zctx, tmp_path: Path, drive_clip: Path) -> None:
    headers, motion, stats = run_extractor(zctx, tmp_path, drive_clip)  # --detect motion: the default
    sent = [h.seq for h in headers]
    # one state change each way: motion starts with the box, ends 1 s after the parked box is still
    start, end = motion[0], motion[-1]
    assert [m.active for m in motion] == [True, False]
    assert start.seq == MOVE_FROM and end.seq > MOVE_TO and end.started_ns == start.ts_ns
    x1, y1, x2, y2 = start.boxes[0]  # the box as it appears, in source pixels
    assert x1 <= box_x(MOVE_FROM) + BOX_W / 2 <= x2 and y1 <= BOX_Y + BOX_H / 2 <= y2

    # the still scene before: the first frame, then a heartbeat every 2 s; while motion is on (its
    # off delay included) every frame; the parked box after: a heartbeat 2 s after the last frame sent
    assert [s for s in sent if s < MOVE_FROM] == [0, 20]
    assert [s for s in sent if MOVE_FROM <= s <= end.seq] == list(range(MOVE_FROM, end.seq))
    after = [s for s in sent if s > end.seq]
    assert after and all(b - a == 2 * FPS for a, b in zip([end.seq - 1, *after], after))
    assert stats["sent"] == len(sent) < FRAMES
    assert stats["skipped"] == {"no_motion": FRAMES - len(sent)} and stats["decoded"] == FRAMES

    # the boxes ride in the headers: in every frame while the box drives, in none on a still scene
    by_seq = {h.seq: h for h in headers}
    assert all(by_seq[s].motion for s in range(MOVE_FROM, MOVE_TO))
    assert not any(by_seq[s].motion for s in sent if s < MOVE_FROM or s > end.seq)
    for s in range(MOVE_FROM + 1, MOVE_TO):  # each frame's boxes hold where the box is now
        cx, cy = box_x(s) + BOX_W / 2, BOX_Y + BOX_H / 2
        assert any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in by_seq[s].motion), s


def test_a_mask_over_the_moving_part_means_no_motion(zctx, tmp_path: Path, drive_clip: Path) -> None:
    headers, motion, stats = run_extractor(zctx, tmp_path, drive_clip, "--mask", PATH_MASK)
    assert motion == []
    assert [h.seq for h in headers] == list(range(0, FRAMES, 2 * FPS))  # heartbeats only
    assert all(not h.motion for h in headers)
    assert stats["skipped"] == {"no_motion": FRAMES - len(headers)}


def test_workers_copy_the_motion_boxes_into_their_results(daemons, zctx, drive_clip: Path) -> None:
    """Extractor -> ventilator -> worker -> the test as the sink: each result has its frame's boxes."""
    frontend, backend, results = tcp(), tcp(), tcp()
    sink = zctx.socket(zmq.PULL)
    sink.setsockopt(zmq.LINGER, 0)
    sink.bind(results)
    daemons.start("ventilator", "ventilator", "--frontend", frontend, "--backend", backend)
    daemons.start("worker", "classifier", "--connect", backend, "--sink", results, "--detector", "covered",
                  "--name", "w1")
    daemons.start("extractor", "extractor", "--camera", "cam", "--source", str(drive_clip), "--push", frontend,
                  *MOTION)
    got: dict[int, wire.Result] = {}
    kinds = []
    while not any(isinstance(m, wire.Eos) for m in kinds):
        assert sink.poll(60_000), f"nothing for 60 s; results so far {sorted(got)}"
        msg = wire.unpack(sink.recv_multipart()[0])
        kinds.append(msg)
        if isinstance(msg, wire.Result):
            got[msg.seq] = msg
    eos = next(m for m in kinds if isinstance(m, wire.Eos))
    while len(got) < eos.sent:  # results may come after the eos that another worker carried
        assert sink.poll(60_000)
        msg = wire.unpack(sink.recv_multipart()[0])
        if isinstance(msg, wire.Result):
            got[msg.seq] = msg
    moving = [r for s, r in got.items() if MOVE_FROM <= s < MOVE_TO]
    assert len(moving) == MOVE_TO - MOVE_FROM and all(r.motion for r in moving)
    assert not got[0].motion and not got[20].motion
    assert [m.active for m in kinds if isinstance(m, wire.Motion)][:2] == [True, False]  # relayed to the sink


def test_the_sink_says_motion_start_and_end_once_and_mqtt_holds_the_state(
        pipeline_factory, daemons, broker: int, drive_clip: Path) -> None:
    live = Subscriber(broker, "camwire/cam/motion")
    p = pipeline_factory(until="cam", sink_args=("--mqtt", f"mqtt://127.0.0.1:{broker}/camwire"))
    p.worker("worker-1", "covered")
    p.extractor("cam", str(drive_clip), extra=MOTION)
    assert daemons.wait("sink", timeout=120) == 0
    events = p.events_written()
    motion = [e for e in events if e["type"].startswith("motion")]
    assert [e["type"] for e in motion] == ["motion_start", "motion_end"]  # one stretch, not one per frame
    start, end = motion
    assert start["ts"] < end["ts"] and start["seq"] == MOVE_FROM
    assert start["detections"] and all(d["label"] == "motion" for d in start["detections"])
    assert daemons.stats("sink")["events"]["motion_start"] == 1

    assert [(body, retained) for _topic, body, retained in live.take(2)] == [("ON", False), ("OFF", False)]
    live.close()
    late = Subscriber(broker, "camwire/cam/motion")  # Home Assistant after a restart: told by the broker
    assert late.take(1) == [("camwire/cam/motion", "OFF", True)]
    late.close()
