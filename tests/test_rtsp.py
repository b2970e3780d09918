"""A camera over RTSP from a real GStreamer RTSP server: frames, offline when it dies, online again."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import free_port

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's interpreter has gi; a venv's has not
SERVER = Path(__file__).with_name("rtsp_server.py")


def have_gst_rtsp() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = ("import gi; gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import GstRtspServer")
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not have_gst_rtsp(), reason="GStreamer RTSP server (python3-gi, "
                                "gir1.2-gst-rtsp-server-1.0) is not installed: run `make debs`")


class RtspServer:
    def __init__(self, port: int, clip: Path) -> None:
        self.port, self.clip, self.proc = port, clip, None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), str(self.port), str(self.clip)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def rtsp(sample_clip):
    server = RtspServer(free_port(), sample_clip)
    yield server
    server.stop()


def test_rtsp_camera_goes_offline_and_comes_back(pipeline_factory, daemons, rtsp) -> None:
    rtsp.start()
    p = pipeline_factory(cooldown=0.0)
    p.worker("worker-1")
    p.extractor("door", rtsp.url, extra=("--read-timeout", "3", "--open-timeout", "3"))

    p.events.wait_type("camera_online")
    first = p.events.wait_type("motion")  # frames decoded from RTSP reach the detector
    assert first["camera"] == "door"

    rtsp.stop()
    mark = len(p.events.seen)
    offline = p.events.wait_type("camera_offline", since=mark)
    assert offline["camera"] == "door" and offline["reason"]

    rtsp.start()  # same port: the extractor's reconnect loop finds it again
    mark = len(p.events.seen)
    p.events.wait_type("camera_online", since=mark)
    again = p.events.wait_type("motion", since=mark)
    assert again["seq"] > first["seq"]  # seq runs on across the reconnect

    assert daemons.stop("extractor-door") == 0
    stats = daemons.stats("extractor-door")["door"]
    assert stats["reconnects"] >= 1 and stats["sent"] > 0
