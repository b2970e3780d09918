"""A camera over RTSP from a real GStreamer RTSP server: frames, offline when it dies, online again."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import av
import pytest

from conftest import free_port, tcp, wait_status
from rtsp import RtspServer, needs_rtsp

pytestmark = needs_rtsp


@pytest.fixture
def rtsp(sample_clip):
    server = RtspServer(free_port(), sample_clip)
    yield server
    server.stop()


def test_rtsp_camera_goes_offline_and_comes_back(pipeline_factory, daemons, rtsp, tmp_path: Path) -> None:
    rtsp.start()
    p = pipeline_factory()
    p.worker("worker-1")
    # the recorder gets the camera's own H.264 packets (Annex B over RTSP), never decoded
    publish, ring = tcp(), tmp_path / "ring"
    daemons.start("recorder", "recorder", "--subscribe", publish, "--dir", str(ring), "--segment", "2")
    p.extractor("door", rtsp.url, extra=("--read-timeout", "3", "--open-timeout", "3", "--publish", publish,
                                         "--publish-enc", "passthrough", "--publish-wait", "30"))

    p.events.wait_type("camera_online")
    first = p.events.wait_type("motion_start")  # frames decoded from RTSP reach the detector
    assert first["camera"] == "door"

    status = p.data_dir / "status.db"
    row = wait_status(status, "door", lambda r: r["state"] == "online" and r["fps_in"] > 0 and r["fps_used"] > 0)
    assert row["last_frame_ts"] and row["reconnects"] == 0

    rtsp.stop()
    mark = len(p.events.seen)
    offline = p.events.wait_type("camera_offline", since=mark)
    assert offline["camera"] == "door" and offline["reason"]
    row = wait_status(status, "door", lambda r: r["state"] == "offline")
    assert row["reason"] == offline["reason"] and row["last_error"]
    last_frame = row["last_frame_ts"]

    rtsp.start()  # same port: the extractor's reconnect loop finds it again
    mark = len(p.events.seen)
    p.events.wait_type("camera_online", since=mark)
    again = p.events.wait_type("motion_start", since=mark)
    assert again["seq"] > first["seq"]  # seq runs on across the reconnect
    row = wait_status(status, "door", lambda r: r["state"] == "online" and r["last_frame_ts"] > last_frame)
    assert row["reconnects"] >= 1 and row["reason"] is None
    assert row["last_error"] is None and row["past_error"] and row["past_error_ts"]  # on record, as past

    shown = subprocess.run([sys.executable, "-m", "camwire", "status", "--dir", str(p.data_dir)],
                           capture_output=True, text=True, check=True).stdout
    door = next(line for line in shown.splitlines() if line.startswith("door "))
    assert door.split()[1] in ("online", "covered") and "never" not in door
    assert any(line.startswith("worker-1 ") for line in shown.splitlines())
    as_json = json.loads(subprocess.run([sys.executable, "-m", "camwire", "status", "--dir", str(p.data_dir),
                                         "--json"], capture_output=True, text=True, check=True).stdout)
    (worker,) = as_json["workers"]
    assert worker["name"] == "worker-1" and worker["results"] > 0 and worker["credits"] is not None  # both views

    assert daemons.stop("extractor-door") == 0
    stats = daemons.stats("extractor-door")["door"]
    assert stats["reconnects"] >= 1 and stats["sent"] > 0

    assert daemons.stop("recorder") == 0
    written = daemons.stats("recorder")["written"]["door"]
    with sqlite3.connect(ring / "index.db") as db:
        segs = db.execute("SELECT path, frames, closed, enc FROM segments ORDER BY start_ns").fetchall()
    assert len(segs) >= 2 and all(closed and enc == "h264" for _, _, closed, enc in segs)
    assert sum(frames for _, frames, _, _ in segs) == written > 0
    for path, frames, _, _ in segs:  # the outage closed one file; the reconnect started the next
        with av.open(str(ring / path)) as c:
            assert len(list(c.decode(video=0))) == frames
