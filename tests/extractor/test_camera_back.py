"""A live camera back within seconds (issue 25): a real GStreamer RTSP server (tests/rtsp_server.py)
stopped for 20 s and started again on its port, with the whole pipeline behind the extractor (the
ventilator, a worker, the sink writing status.db) and the console reading it.

What is checked is what the extractor chose and what status says, never how long anything took:
every wait between its rounds while the camera was online a moment ago is the fast probe's (its
JSON log records say each wait and the policy that chose it); no round failed after the server's
return before the camera was online; then status.db, ``camwire status --json`` and the console
say online with no current error, keep the refused connection as past, and name the detector and
the worker that served the camera. The policy itself (extractor.camera.retry_delay) and the knock
at an RTSP port (extractor.camera.knock: a real listener, a closed port, and a listener whose
queue is full, as a host that does not answer) are checked with no daemon.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from camwire.common import wire
from camwire.common.lifecycle import BACKOFF_CAP_S
from camwire.extractor.camera import FAST_PROBE_S, RECENT_ONLINE_S, knock, retry_delay
from camwire.sample import make_sample_clip
from conftest import Pull, free_port, wait_status
from processes import log_records
from console import start_console
from rtsp import RtspServer, needs_rtsp

OUTAGE_S = 20.0  # the issue's: the server away this long, then back on its port


def test_a_camera_online_recently_is_probed_fast_and_one_down_long_or_never_online_backs_off() -> None:
    never = [retry_delay(n, None) for n in range(1, 9)]
    assert never == [(0.5, "backoff"), (1.0, "backoff"), (2.0, "backoff"), (4.0, "backoff"), (8.0, "backoff"),
                     (16.0, "backoff"), (BACKOFF_CAP_S, "backoff"), (BACKOFF_CAP_S, "backoff")]
    # online a moment ago, and still a minute before RECENT_ONLINE_S: every round a fast probe
    for down_for in (0.0, 20.0, RECENT_ONLINE_S - 60):
        recent = [retry_delay(n, down_for) for n in range(1, 300)]
        assert recent[0] == (0.5, "fast") and all(d == (FAST_PROBE_S, "fast") for d in recent[1:])
    # down for longer than that: the usual capped backoff
    assert retry_delay(300, RECENT_ONLINE_S) == (BACKOFF_CAP_S, "backoff")
    assert retry_delay(2, RECENT_ONLINE_S + 1) == (1.0, "backoff")


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, int]]:
    """A listening socket that never accepts by itself (a queue of one)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    yield srv, srv.getsockname()[1]
    srv.close()


def fill(port: int) -> list[socket.socket]:
    """Connections to ``port`` until its accept queue is full: the kernel then drops the next
    SYNs, as a host that does not answer does. The caller closes them."""
    held: list[socket.socket] = []
    for _ in range(8):  # the queue's length is the kernel's to round
        s = socket.socket()
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
        except TimeoutError:
            s.close()
            return held
        held.append(s)
    raise AssertionError("the accept queue never filled")


def test_a_knock_passes_a_listening_port_and_raises_for_a_closed_or_silent_one(listener) -> None:
    srv, port = listener
    knock(f"rtsp://user:pw@127.0.0.1:{port}/cam", timeout=2.0)  # answered: nothing raised
    srv.accept()[0].close()
    closed = free_port()
    with pytest.raises(ConnectionRefusedError):
        knock(f"rtsp://127.0.0.1:{closed}/cam", timeout=2.0)
    knock(f"http://127.0.0.1:{closed}/cam.mjpg")  # not RTSP: never knocked at (a proxy may stand between)
    knock(f"/tmp/no-such-{closed}.mp4")
    held = fill(port)
    try:
        with pytest.raises(TimeoutError, match="no answer within 0.5s"):
            knock(f"rtsp://127.0.0.1:{port}/cam", timeout=0.5)
    finally:
        for s in held:
            s.close()


def test_a_retried_rtsp_camera_whose_host_does_not_answer_costs_a_knock_not_an_open(daemons, zctx, listener) -> None:
    """The first round is FFmpeg's, with its open timeout; a retry knocks first, and the knock
    says the host did not answer: FFmpeg is not tried again until something does."""
    _srv, port = listener
    held = fill(port)
    pull = Pull(zctx)
    try:
        daemons.start("extractor", "extractor", "--camera", "door", "--source", f"rtsp://127.0.0.1:{port}/cam",
                      "--push", pull.addr, "--open-timeout", "1")
        second = pull.until(lambda m: isinstance(m, wire.Status) and m.attempts >= 2, timeout=60)
        first = next(m for m in pull.statuses() if m.attempts == 1)
        assert first.state == second.state == "offline"
        assert "no answer within 2s" not in first.last_error  # FFmpeg's own timeout
        assert second.last_error.startswith("no answer within 2s")  # the knock's
        assert daemons.stop("extractor") == 0
    finally:
        for s in held:
            s.close()
    failures = [r for r in log_records(daemons.tmp / "extractor.log") if r["event"] == "source failed"]
    assert failures[1]["error"] == "TimeoutError"


# -- the outage, whole ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minute of small video: the stream runs on well past the camera's return (the RTSP server
    plays a clip once per connection, then ends the stream)."""
    path = tmp_path_factory.mktemp("clips") / "long.mp4"
    make_sample_clip(path, seconds=60.0, fps=10, width=320, height=180, gop=20, covered=None)
    return path


@pytest.fixture
def rtsp(long_clip: Path) -> Iterator[RtspServer]:
    server = RtspServer(free_port(), long_clip)
    yield server
    server.stop()




def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@needs_rtsp
def test_an_rtsp_server_stopped_20s_is_online_again_at_the_first_probe_after_its_return(
        pipeline_factory, daemons, rtsp, tmp_path: Path) -> None:
    rtsp.start()
    p = pipeline_factory()
    p.worker("worker-1")
    p.extractor("door", rtsp.url, extra=("--fps", "2"))
    status_db = p.data_dir / "status.db"
    p.events.wait_type("camera_online")
    served = wait_status(status_db, "door", lambda r: r["state"] == "online" and r["detectors"])
    log = daemons.tmp / "extractor-door.log"

    rtsp.stop()
    stopped_at = time.monotonic()
    mark = len(p.events.seen)
    p.events.wait_type("camera_offline", since=mark)
    down = wait_status(status_db, "door", lambda r: r["state"] == "offline" and "Connection refused" in (r["last_error"] or ""))
    assert down["last_error_ts"] and down["past_error"] is None
    time.sleep(max(0.0, stopped_at + OUTAGE_S - time.monotonic()))  # the outage itself, not a wait for anything
    before_return = len(log_records(log))
    rtsp.start()
    mark = len(p.events.seen)
    p.events.wait_type("camera_online", since=mark)

    records = log_records(log)
    online_at = [i for i, r in enumerate(records) if r["event"] == "camera online"]
    assert len(online_at) == 2  # the first connection, and the one after the return
    outage = records[online_at[0] + 1:online_at[1]]
    retries = [r for r in outage if r["event"] == "connecting"]
    assert len(retries) >= 3 and all("waited_s" in r for r in retries)
    # every wait the extractor chose while the camera was down was a fast probe's
    assert {r["retry"] for r in retries} == {"fast"}, [(r["waited_s"], r["retry"]) for r in retries]
    assert max(r["waited_s"] for r in retries) <= FAST_PROBE_S
    # the probe under way at the return, or the next one, found it: no round failed after it
    assert sum(r["event"] == "source failed" for r in records[before_return:online_at[1]]) <= 1

    back = wait_status(status_db, "door", lambda r: r["state"] == "online" and r["last_frame_ts"] > served["last_frame_ts"]
                    and r["last_error"] is None)
    assert back["last_error_ts"] is None and back["attempts"] == 0 and back["reason"] is None
    assert "Connection refused" in back["past_error"] and back["past_error_ts"] >= down["last_error_ts"]
    assert back["detectors"] == served["detectors"] and back["workers"] == "worker-1"

    shown = json.loads(subprocess.run([sys.executable, "-m", "camwire", "status", "--dir", str(p.data_dir), "--json"],
                                      capture_output=True, text=True, check=True).stdout)
    door = next(c for c in shown["cameras"] if c["camera"] == "door")
    assert door["state"] == "online" and door["last_error"] is None and "Connection refused" in door["past_error"]
    (worker,) = shown["workers"]
    assert worker["name"] == "worker-1" and back["detectors"] == worker["detector"] == "covered"  # the one it serves

    url = start_console(daemons, "--data-dir", str(p.data_dir), "--events", str(p.events_file))
    cam = next(c for c in get(url + "/api/cameras")["cameras"] if c["camera"] == "door")
    assert cam["state"] == "online" and cam["last_error"] is None
    row = next(c for c in get(url + "/api/system")["cameras"] if c["camera"] == "door")
    assert row["detectors"] == back["detectors"] and "Connection refused" in row["past_error"]

    assert daemons.stop("extractor-door") == 0
    assert daemons.stats("extractor-door")["door"]["reconnects"] >= len(retries)
