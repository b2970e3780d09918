"""SIGHUP reloads the extractor's cameras; two extractor processes on one host share the work."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import zmq

from camwire.sample import make_sample_clip
from camwire.common import wire
from conftest import free_port, scrape, tcp, value


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s, small: a camera read in real time outlives each test."""
    path = tmp_path_factory.mktemp("clips") / "long.mp4"
    make_sample_clip(path, seconds=60, width=320, height=180, covered=None)
    return path


class Receiver:
    """The ventilator's side of ``frontend``: a PULL socket; frames are kept as (camera, seq)."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.addr = tcp()
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(self.addr)
        self.frames: list[tuple[str, int]] = []
        self.statuses: list[wire.Status] = []

    def until(self, predicate, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            assert left > 0 and self.sock.poll(int(left * 1000)), f"not within {timeout}s: {self.counts()}"
            parts = self.sock.recv_multipart()
            if len(parts) == 2:
                h = wire.peek_frame(parts)
                self.frames.append((h.camera, h.seq))
            elif isinstance(msg := wire.unpack(parts[0]), wire.Status):
                self.statuses.append(msg)

    def of(self, camera: str) -> list[int]:
        return [seq for cam, seq in self.frames if cam == camera]

    def counts(self) -> dict[str, int]:
        return {cam: len(self.of(cam)) for cam in {c for c, _ in self.frames}}


def section(name: str, url: Path) -> str:
    return f'[cameras.{name}]\nurl = "{url}"\nrealtime = true\nevery = 5\n'


def test_sighup_reloads_the_camera_list(daemons, zctx, long_clip: Path, tmp_path: Path) -> None:
    rx = Receiver(zctx)
    head = f'[sockets]\nfrontend = "{rx.addr}"\n\n' + section("a", long_clip)
    b = section("b", long_clip)
    path = tmp_path / "camwire.toml"
    path.write_text(head + "#" * (len(b) - 1) + "\n")  # b's place, kept by a comment of its size
    port = free_port()
    proc = daemons.start("extractor", "extractor", "--config", str(path), "--metrics-port", str(port))
    rx.until(lambda r: len(r.of("a")) >= 5)

    # SIGHUP with the file as it was: reloaded, and the running camera is not touched
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while value(scrape(port), "camwire_extractor_reloads_total", outcome="applied") < 1:
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.1)  # a counter has no change notification: scrape again
    mark = len(rx.of("a"))
    rx.until(lambda r: len(r.of("a")) >= mark + 5)

    # b written in place with the file's size and times kept: nothing but SIGHUP can tell it changed
    st = path.stat()
    with open(path, "r+") as f:
        f.write(head + b)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_ino == st.st_ino
    proc.send_signal(signal.SIGHUP)
    rx.until(lambda r: len(r.of("b")) >= 5)

    a = rx.of("a")
    assert a == sorted(set(a))  # a ran on through both reloads: never restarted
    assert [s.state for s in rx.statuses if s.camera == "a"].count("connecting") == 1
    assert rx.of("b")[0] == 0
    assert daemons.stop("extractor") == 0
    assert set(daemons.stats("extractor")) == {"a", "b"}


def test_two_extractor_processes_on_one_host_each_serve_a_camera(daemons, zctx, long_clip: Path,
                                                                 tmp_path: Path) -> None:
    rx = Receiver(zctx)
    path = tmp_path / "camwire.toml"
    path.write_text(f'[sockets]\nfrontend = "{rx.addr}"\n\n' + section("a", long_clip) + section("b", long_clip))
    for name in ("a", "b"):  # as camwire-extractor@a and camwire-extractor@b would
        daemons.start(f"extractor-{name}", "extractor", "--config", str(path), "--cameras", name)
    rx.until(lambda r: len(r.of("a")) >= 10 and len(r.of("b")) >= 10)
    for name in ("a", "b"):
        assert daemons.procs[f"extractor-{name}"].poll() is None
        assert daemons.stop(f"extractor-{name}") == 0
        assert set(daemons.stats(f"extractor-{name}")) == {name}
