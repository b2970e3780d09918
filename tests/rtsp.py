"""The tests' handle on a real RTSP server (tests/rtsp_server.py, GStreamer's, run with Debian's
/usr/bin/python3, which has ``gi``): start it on a port with a clip, stop it like a dead camera,
freeze and resume it like a hung one."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's interpreter has gi; a venv's has not
SERVER = Path(__file__).parent / "rtsp_server.py"


def have_gst_rtsp() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = ("import gi; gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import GstRtspServer")
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


needs_rtsp = pytest.mark.skipif(not have_gst_rtsp(), reason="GStreamer RTSP server (python3-gi, "
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

    def freeze(self) -> None:
        """SIGSTOP: the server holds its connections and says nothing, as a hung camera does."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # a stopped process too
            self.proc.wait()
