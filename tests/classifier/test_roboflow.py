"""The Roboflow Inference detector through inference-sdk, against a protocol stand-in of the
server (tests/inference_standin.py: no real Inference server is reachable here)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from camwire.cli import parse
from camwire.supervisor import plan
from camwire.classifier.detectors import make_detector
from camwire.common.wire import FrameHeader
from conftest import free_port
from inference_standin import InferenceStandIn

KEY = "rf_test_secret_9f3a"


def frame(w: int = 640, h: int = 360, seq: int = 0):
    return FrameHeader(camera="c", seq=seq, ts_ns=0, pts=None, width=w, height=h), np.full((h, w, 3), 90, np.uint8)


@pytest.fixture
def server():
    s = InferenceStandIn(free_port()).start()
    yield s
    s.stop()


def detector(server: InferenceStandIn, monkeypatch, **extra):
    monkeypatch.setenv("ROBOFLOW_API_KEY", KEY)
    return make_detector("roboflow:people/2", {"api_url": server.url, **extra})


def test_predictions_become_detections_in_source_pixels(server, monkeypatch) -> None:
    det = detector(server, monkeypatch)
    (res,) = det.detect([frame(640, 360)])
    d = res.detections[0]
    assert (d.label, d.confidence, d.box) == ("person", 0.9, (240.0, 135.0, 400.0, 225.0))
    paths = [(r.method, r.path.split("?")[0]) for r in server.state.requests]
    # the SDK looks the model up, loads it once, then infers
    assert ("GET", "/model/registry") in paths and ("POST", "/model/add") in paths
    assert paths[-1] == ("POST", "/infer/object_detection")
    # the key goes in the Authorization header, never in a URL or a body
    for r in server.state.requests:
        assert KEY not in r.path and KEY not in str(r.body)
    assert server.infer_requests()[-1].headers["Authorization"] == f"Bearer {KEY}"


def test_a_batch_is_spread_over_concurrent_requests(server, monkeypatch) -> None:
    det = detector(server, monkeypatch, batch=8, concurrency=4)
    det.detect([frame()])  # load the model first
    server.set_mode("gather", gather=4)  # each request waits until four are in flight together
    results = det.detect([frame(640 + 8 * i, 360, seq=i) for i in range(8)])
    assert server.state.most_in_flight == 4
    batched = server.infer_requests()[1:]
    assert len(batched) == 4 and all(len(r.body["image"]) == 2 for r in batched)
    # answers come back in frame order, whatever order the requests finished in
    assert [r.detections[0].box[2] for r in results] == [(640 + 8 * i) * 5 / 8 for i in range(8)]


def test_slow_down_and_503_servers_give_errors_not_a_stuck_worker(server, monkeypatch) -> None:
    det = detector(server, monkeypatch, infer_timeout=0.5)
    det.detect([frame()])

    server.set_mode("slow", delay_s=3.0)
    # our deadline ends the call: had the server's answer (3 s later) ended it, there would be no error
    with pytest.raises(TimeoutError, match="no answer within 0.5s"):
        det.detect([frame()])

    server.set_mode("unavailable")  # 503: the SDK retries, our deadline still holds
    with pytest.raises(Exception):
        det.detect([frame()])

    server.set_mode("ok")
    server.stop()  # down: connection refused
    with pytest.raises(Exception):
        det.detect([frame()])
    server.start()  # back on the same port: detections resume
    deadline = time.monotonic() + 20
    while True:
        try:
            (res,) = det.detect([frame()])
            break
        except Exception:
            # calls left hanging on the slow server still hold the caller threads for a moment
            assert time.monotonic() < deadline, "detections did not resume"
            time.sleep(0.2)
    assert res.detections[0].label == "person"


def test_class_filter_and_key_from_dotenv(server, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ROBOFLOW_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"ROBOFLOW_API_KEY={KEY}\n")
    det = make_detector("roboflow:people/2", {"api_url": server.url, "classes": "car"})
    (res,) = det.detect([frame()])
    assert res.detections == []  # only cars wanted; the server found a person
    assert server.infer_requests()[-1].headers["Authorization"] == f"Bearer {KEY}"


def test_worker_process_survives_an_outage(pipeline_factory, daemons, server, sample_clip: Path,
                                           monkeypatch) -> None:
    monkeypatch.setenv("ROBOFLOW_API_KEY", KEY)  # the worker inherits it, as from a unit's EnvironmentFile
    p = pipeline_factory()
    p.worker("worker-1", "roboflow:people/2", "--api-url", server.url, "--infer-timeout", "1",
             "--batch", "2", "--concurrency", "2")
    p.extractor("cam", str(sample_clip), extra=("--realtime",))
    first = p.events.wait_for(lambda e: e["type"] == "object" and e["phase"] == "start")
    assert first["label"] == "person" and first["box"] == [240.0, 135.0, 400.0, 225.0]

    server.stop()
    log = daemons.tmp / "worker-1.log"
    deadline = time.monotonic() + 30
    while "detector failed" not in log.read_text():  # the worker reports the outage and goes on
        assert time.monotonic() < deadline, "the worker never reported the dead server"
        time.sleep(0.1)
    mark, down = len(p.events.seen), time.time()
    server.start()
    # the person is seen again after the outage: an object event (its start, an update, or at the
    # latest its end when the clip ends) says so by when it was last seen
    again = p.events.wait_for(lambda e: e["type"] == "object" and e["last_seen"] > down, since=mark)
    assert again["seq"] > first["seq"]
    assert daemons.wait("extractor-cam") == 0  # the clip's end (an end event may have come with it)
    assert daemons.stop("worker-1") == 0
    errors = daemons.stats("worker-1")["detector_errors"]  # per kind, logged once a minute with a count
    assert sum(errors.values()) >= 1
    assert KEY not in log.read_text() and KEY not in p.events_file.read_text()


def test_run_hands_every_detector_option_to_its_workers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "l.txt").write_text("person\ncar\n")  # a labels file must be there: run checks it
    args = parse(["run", "--camera", "c=x.mp4", "--detector", "roboflow:people/2",
                  "--api-url", "http://gpu:9001", "--batch", "8", "--batch-wait", "5ms",
                  "--confidence", "0.6", "--iou", "0.3", "--classes", "person,car",
                  "--labels", "l.txt", "--infer-timeout", "2", "--concurrency", "3"])
    worker = next(c for c in plan(args, tmp_path) if c.role == "classifier")
    argv = worker.argv
    for flag, value in [("--api-url", "http://gpu:9001"), ("--batch", "8"), ("--batch-wait", "0.005"),
                        ("--confidence", "0.6"), ("--iou", "0.3"), ("--classes", "person,car"),
                        ("--labels", "l.txt"), ("--infer-timeout", "2.0"), ("--concurrency", "3")]:
        assert argv[argv.index(flag) + 1] == value
