"""A stand-in for the recorder's peers (an extractor's ``--publish``, the sink's) and readers of
what a real recorder process left in its folder and metrics; shared by the recorder's tests."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import zmq

from camwire.common import pixels, wire
from conftest import free_port, scrape, tcp, value

DAY_NS = 86_400 * 10**9
W, H = 64, 48


class Feed:
    """An XPUB standing in for an extractor's ``--publish`` (or the sink's): it returns once the
    recorder has subscribed, then publishes LZ4 frames stamped with the wall clock, paced like a
    25 fps camera, ``size`` (width, height) pixels of noise each."""

    def __init__(self, ctx: zmq.Context, addr: str | None = None, size: tuple[int, int] = (W, H)) -> None:
        self.addr = addr or tcp()
        self.width, self.height = size
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.bind(self.addr)
        self.seq: dict[str, int] = {}
        self.rng = np.random.default_rng(7)

    def subscribed(self, timeout: float = 30.0) -> "Feed":
        assert self.sock.poll(int(timeout * 1000)), "the recorder never subscribed"
        self.sock.recv()
        return self

    def frame(self, camera: str = "cam", ts_ns: int | None = None) -> None:
        seq = self.seq.get(camera, 0)
        self.seq[camera] = seq + 1
        header = wire.FrameHeader(camera=camera, seq=seq, ts_ns=ts_ns or time.time_ns(), width=self.width, height=self.height,
                                  pts=seq / 25, enc="lz4")
        image = self.rng.integers(0, 255, (self.height, self.width, 3), dtype=np.uint8)  # noise: every file has a real size
        self.sock.send_multipart(pixels.encode_frame(header, image))

    def send(self, *parts: bytes) -> None:
        self.sock.send_multipart(list(parts))

    def play(self, until, timeout: float = 60.0, cameras: tuple[str, ...] = ("cam",), check_every: int = 5) -> None:
        """Publish frames at 25 fps until ``until()`` holds (checked every few frames)."""
        deadline = time.monotonic() + timeout
        n = 0
        while True:
            if n % check_every == 0 and until():
                return
            assert time.monotonic() < deadline, f"not reached within {timeout}s"
            for camera in cameras:
                self.frame(camera)
            n += 1
            time.sleep(0.04)  # the camera's frame rate, not a wait for anything

    def sent(self, camera: str = "cam") -> int:
        return self.seq.get(camera, 0)

    def end(self, *cameras: str) -> None:
        """Each camera's Eos: a recorder started with ``--exit-when-ended`` exits once it has
        recorded everything sent before it."""
        for camera in cameras or ("cam",):
            self.send(wire.pack(wire.Eos(camera=camera, sent=self.sent(camera), last_seq=self.sent(camera) - 1)))


def rows(root: Path) -> list[dict]:
    try:
        with sqlite3.connect(f"file:{root / 'index.db'}?mode=ro", uri=True) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM segments ORDER BY start_ns")]
    except sqlite3.OperationalError:  # not there yet, or being created
        return []


def closed_rows(root: Path) -> list[dict]:
    return [r for r in rows(root) if r["closed"]]


def start_recorder(daemons, feed: Feed, root: Path, *args: str, name: str = "recorder") -> int:
    port = free_port()
    daemons.start(name, "recorder", "--subscribe", feed.addr, "--dir", str(root), "--segment", "1",
                  "--metrics-port", str(port), *args)
    return port


def metric(port: int, name: str, **labels: str) -> float:
    try:
        return value(scrape(port), f"camwire_recorder_{name}_total", **labels)
    except OSError:  # the server is not up yet
        return 0.0
