"""Status tells the truth: a silent extractor, a detector failing on every frame, a dead sink.
Real daemons over TCP, a real Roboflow-protocol server that answers 503 (tests/inference_standin)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from camwire.sink.store.status_db import read_status
from camwire.sink.events import SILENT
from conftest import ROOT, free_port, scrape, shared_clip, value
from inference_standin import InferenceStandIn
from test_sink_disk import wait_row, wait_sink_row


def camwire_status(data_dir: Path, *extra: str) -> str:
    return subprocess.run([sys.executable, "-m", "camwire", "status", "--dir", str(data_dir), *extra], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


def live_clip(sample_clip: Path) -> Path:
    try:
        return shared_clip("people-walking.mp4")  # long enough that it is still playing when killed
    except BaseException:  # noqa: BLE001 - pytest's Skipped: the generated clip does too (12 s)
        return sample_clip


def test_a_killed_extractor_goes_offline_as_silent(pipeline_factory, daemons, sample_clip: Path) -> None:
    port = free_port()
    p = pipeline_factory(sink_args=("--silent-after", "3", "--metrics-port", str(port)))
    p.worker("worker-1")
    extractor = p.extractor("door", str(live_clip(sample_clip)), extra=("--realtime",))
    p.events.wait_for(lambda e: e["type"] == "camera_online" and e["camera"] == "door")
    status = p.data_dir / "status.db"
    wait_row(status, "door", lambda r: r["state"] == "online" and r["results"] > 0)
    assert value(scrape(port), "camwire_camera_up", camera="door") == 1

    extractor.kill()  # SIGKILL: it cannot say goodbye
    extractor.wait()
    offline = p.events.wait_for(lambda e: e["type"] == "camera_offline", timeout=30)
    assert (offline["camera"], offline["reason"]) == ("door", SILENT)
    row = wait_row(status, "door", lambda r: r["state"] == "offline")
    assert row["reason"] == SILENT
    assert value(scrape(port), "camwire_camera_up", camera="door") == 0
    door = next(line for line in camwire_status(p.data_dir).splitlines() if line.startswith("door "))
    assert f"offline: {SILENT}" in door

    # the camera comes back: its new extractor says so, and status follows
    p.extractor("door", str(live_clip(sample_clip)), extra=("--realtime",))
    p.events.wait_for(lambda e: e["type"] == "camera_online" and e["ts"] > offline["ts"])
    wait_row(status, "door", lambda r: r["state"] == "online")
    assert daemons.stop("sink") == 0
    assert daemons.stats("sink")["events"]["camera_offline"] == 1


def test_a_detector_failing_on_every_frame_makes_the_camera_degraded(pipeline_factory, daemons, monkeypatch,
                                                                     sample_clip: Path) -> None:
    server = InferenceStandIn(free_port()).start()
    server.set_mode("unavailable")  # every inference: 503
    try:
        monkeypatch.setenv("ROBOFLOW_API_KEY", "rf_test_key")
        p = pipeline_factory()
        p.worker("worker-1", "roboflow:people/2", "--api-url", server.url, "--infer-timeout", "2")
        p.extractor("yard", str(live_clip(sample_clip)), extra=("--realtime",))
        row = wait_row(p.data_dir / "status.db", "yard", lambda r: r["state"] == "degraded", timeout=60)
        assert row["reason"] and "503" in row["reason"]
        yard = next(line for line in camwire_status(p.data_dir).splitlines() if line.startswith("yard "))
        assert "degraded: " in yard

        server.set_mode("ok")  # the server is back: so is the camera
        wait_row(p.data_dir / "status.db", "yard", lambda r: r["state"] == "online", timeout=60)
    finally:
        server.stop()
    assert daemons.stop("sink") == 0
    assert daemons.stats("sink")["result_errors"]["yard"] > 0


def test_status_of_a_dead_sink_says_stale(pipeline_factory, daemons) -> None:
    p = pipeline_factory()
    wait_sink_row(p.data_dir / "status.db")
    assert camwire_status(p.data_dir).startswith("sink: running")
    daemons.procs["sink"].kill()  # dead without a word: no clean exit recorded
    daemons.procs["sink"].wait()
    deadline = time.monotonic() + 60
    while not (shown := camwire_status(p.data_dir)).startswith("STALE"):
        assert time.monotonic() < deadline, shown
        time.sleep(0.5)  # staleness is a matter of time passing: nothing to await but the clock
    assert "the sink has not written for" in shown.splitlines()[0]
    as_json = json.loads(camwire_status(p.data_dir, "--json"))
    assert as_json["sink"]["stale"] and as_json["sink"]["stopped_ts"] is None


def test_a_failed_camera_counts_as_drained_and_shows_why(pipeline_factory, daemons, tmp_path: Path,
                                                         sample_clip: Path) -> None:
    p = pipeline_factory(until="gone,real")
    p.worker("worker-1")
    p.extractor("gone", str(tmp_path / "no-such-file.mp4"))
    p.extractor("real", str(sample_clip), extra=("--every", "5"))
    offline = p.events.wait_for(lambda e: e["camera"] == "gone" and e["type"] == "camera_failed")
    assert offline["reason"]
    assert daemons.wait("sink", timeout=120) == 0  # "gone" will never send a frame: it is drained all the same
    (gone,) = [r for r in read_status(p.data_dir / "status.db")[0] if r["camera"] == "gone"]
    assert gone["state"] == "failed" and gone["reason"] == offline["reason"]
    line = next(x for x in camwire_status(p.data_dir).splitlines() if x.startswith("gone "))
    assert f"failed: {offline['reason']}" in line
    assert daemons.stats("sink")["results"]["real"] == 60
