"""Server keys per host between real processes (issue 26): a recorder subscribed to extractors on two
hosts, each host with its own key pair as INSTALL.md advises, trusts each by ``servers/HOST.key``
(127.0.0.1 and 127.0.0.2 stand for the two hosts: Linux's loopback holds all of 127/8). A wrong key
for one host is refused there, and the other host's frames still flow.

The publishers are the test's own XPUBs, CURVE servers with each host's secret, bound on port 0
(the address read back), sending LZ4 frames as an extractor's ``--publish`` does."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import zmq

from camwire.common import pixels, wire
from camwire.common.curve import read_keys
from conftest import ROOT, wait_log
from processes import log_records

W, H = 64, 48
FAILED = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


def keygen(folder: Path, name: str) -> tuple[Path, Path]:
    done = subprocess.run([sys.executable, "-m", "camwire", "keygen", name, "--dir", str(folder)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return folder / f"{name}.key", folder / f"{name}.key_secret"


class HostFeed:
    """An extractor's ``--publish`` on one host: an XPUB bound on port 0 of ``host``, a CURVE server
    with that host's secret key; it knows when a subscriber got through (its subscription) and
    when one was refused (a failed handshake, on its monitor)."""

    def __init__(self, ctx: zmq.Context, host: str, secret: Path, camera: str) -> None:
        _, key = read_keys(secret, secret=True)
        self.camera, self.seq = camera, 0
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.CURVE_SERVER, 1)
        self.sock.setsockopt(zmq.CURVE_SECRETKEY, key)
        self.failures = self.sock.get_monitor_socket(FAILED)
        self.sock.bind(f"tcp://{host}:0")
        self.addr = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.rng = np.random.default_rng(len(camera))

    def subscribed(self, timeout: float = 30.0) -> None:
        assert self.sock.poll(int(timeout * 1000)), f"no subscriber got through to {self.addr}"
        self.sock.recv()

    def refused(self, timeout: float = 30.0) -> None:
        assert self.failures.poll(int(timeout * 1000)), f"no handshake was refused at {self.addr}"

    def frame(self) -> None:
        header = wire.FrameHeader(camera=self.camera, seq=self.seq, ts_ns=time.time_ns(), width=W, height=H,
                                  pts=self.seq / 25, enc="lz4")
        self.seq += 1
        self.sock.send_multipart(pixels.encode_frame(header, self.rng.integers(0, 255, (H, W, 3), dtype=np.uint8)))


def logged(path: Path, predicate: Callable[[dict[str, Any]], bool]) -> bool:
    """Whether the daemon's JSON log has a line matching ``predicate`` yet."""
    return path.exists() and any(predicate(r) for r in log_records(path))


def recording(log: Path, camera: str) -> Callable[[], bool]:
    return lambda: logged(log, lambda r: r.get("event") == "segment started" and r.get("camera") == camera)


def play(feeds: list[HostFeed], until: Callable[[], bool], proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Every feed's camera at 25 fps until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        assert proc.poll() is None, f"the recorder exited ({proc.returncode})"
        assert time.monotonic() < deadline, f"not reached within {timeout}s"
        for feed in feeds:
            feed.frame()
        time.sleep(0.04)  # the cameras' frame rate, not a wait for anything


@pytest.fixture
def hosts(tmp_path: Path) -> dict[str, Path]:
    """Two extractor hosts' pairs, the recorder's, a stranger's; the recorder's servers folder."""
    keys = tmp_path / "keys"
    out = {name: keygen(keys / name, name)[1] for name in ("host-a", "host-b", "recorder", "stranger")}
    out["servers"] = keys / "servers"
    out["servers"].mkdir()
    return out


def start_recorder(daemons, hosts: dict[str, Path], name: str, feeds: list[HostFeed], root: Path) -> subprocess.Popen:
    argv = ["recorder", "--dir", str(root), "--segment", "1", "--curve-key", str(hosts["recorder"]),
            "--curve-servers", str(hosts["servers"])]
    for feed in feeds:
        argv += ["--subscribe", feed.addr]
    return daemons.start(name, *argv)


def test_a_recorder_trusts_extractors_on_two_hosts_each_by_its_own_key(daemons, zctx, hosts: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    servers = hosts["servers"]
    for host, pair in (("127.0.0.1", "host-a"), ("127.0.0.2", "host-b")):  # no extractor.key: one per host
        (servers / f"{host}.key").write_bytes(hosts[pair].with_suffix(".key").read_bytes())
    a = HostFeed(zctx, "127.0.0.1", hosts["host-a"], "gate")
    b = HostFeed(zctx, "127.0.0.2", hosts["host-b"], "yard")
    proc = start_recorder(daemons, hosts, "recorder", [a, b], tmp_path / "rec")
    a.subscribed()
    b.subscribed()
    log = tmp_path / "recorder.log"
    play([a, b], lambda: recording(log, "gate")() and recording(log, "yard")(), proc)
    assert not a.failures.poll(0) and not b.failures.poll(0)
    assert daemons.stop("recorder") == 0

    # host B's key pinned wrong (a stranger's): B is refused, A's frames still flow
    (servers / "127.0.0.2.key").write_bytes(hosts["stranger"].with_suffix(".key").read_bytes())
    a2 = HostFeed(zctx, "127.0.0.1", hosts["host-a"], "gate")
    b2 = HostFeed(zctx, "127.0.0.2", hosts["host-b"], "yard")
    proc = start_recorder(daemons, hosts, "recorder-2", [a2, b2], tmp_path / "rec-2")
    a2.subscribed()
    b2.refused()
    log = tmp_path / "recorder-2.log"
    play([a2, b2], recording(log, "gate"), proc)
    wait_log(log, lambda r: r.get("event", "").startswith("handshake with peer failed") and r.get("address") == b2.addr,
             proc=proc)
    assert not b2.sock.poll(0), "the recorder got through to host B with a key not B's"
    assert not recording(log, "yard")()
    assert daemons.stop("recorder-2") == 0
    failed = daemons.stats("recorder-2")["handshakes_failed"]
    assert b2.addr in failed and a2.addr not in failed, failed
