"""A worker's credit window: as many frames as keep it busy across its round trip to the
ventilator, measured by its heartbeats' echoes, and never more than ``--max-window``."""

from __future__ import annotations

import time

import numpy as np
import zmq

from camwire.classifier.worker_loop import window_for
from camwire.common import wire
from conftest import bound


def test_a_near_worker_asks_for_its_batch_and_the_next_frame() -> None:
    assert window_for(1, None, None, 32) == 1  # nothing measured yet: its batch
    assert window_for(1, 0.0005, 0.030, 32) == 2  # 0.5 ms away, 30 ms a frame: the next one at hand
    assert window_for(4, 0.0005, 0.030, 32) == 5
    assert window_for(1, 0.0005, 0.030, 1) == 1  # --max-window 1: one frame at a time, as before


def test_a_distant_worker_asks_for_a_round_trip_of_frames_more() -> None:
    # 100 ms away, 30 ms a frame: the next one, and 4 it finishes during a round trip
    assert window_for(1, 0.100, 0.030, 32) == 1 + 1 + 4
    assert window_for(3, 0.100, 0.050, 32) == 3 + 1 + 2


def test_the_window_is_bounded() -> None:
    assert window_for(1, 5.0, 0.001, 32) == 32
    assert window_for(8, 5.0, 0.001, 4) == 8  # never below its batch
    assert window_for(1, 0.100, 0.0, 32) == 1  # no time per frame known: nothing to size it by


def _frame(seq: int) -> list[bytes]:
    header = wire.FrameHeader(camera="cam", seq=seq, ts_ns=time.time_ns(), width=64, height=48)
    return wire.frame_parts(header, np.full((48, 64, 3), seq % 256, np.uint8).tobytes())


def test_a_worker_whose_round_trip_is_long_widens_its_window_up_to_its_bound(daemons, zctx) -> None:
    """The test is the worker's ventilator: it hands a frame over for every credit and echoes each
    heartbeat only when the next one comes, a round trip of about a heartbeat (1 s), far longer
    than the ``covered`` detector's time per frame. The worker's window (credits given less frames
    done: what it holds and what is on its way) starts at its batch and grows to --max-window."""
    (router, backend), (sink, results) = bound(zctx, zmq.ROUTER), bound(zctx, zmq.PULL)
    daemons.start("worker", "classifier", "--connect", backend, "--sink", results, "--detector", "covered",
                  "--name", "w1", "--max-window", "5")
    granted = done = sent = 0
    widest, first = 0, None
    held: list[int] = []
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(sink, zmq.POLLIN)
    deadline = time.monotonic() + 60
    while widest < 5 and time.monotonic() < deadline:
        ready = dict(poller.poll(1000))
        while sink in ready and sink.poll(0):
            sink.recv_multipart()
        if router not in ready:
            continue
        ident, body = router.recv_multipart()
        msg = wire.unpack(body)
        if isinstance(msg, wire.Ready):
            granted += msg.credits
            done += len(msg.done)
            first = granted if first is None else first
            widest = max(widest, granted - done)
            for _ in range(granted - sent):
                router.send_multipart([ident, *_frame(sent)])
                sent += 1
        elif isinstance(msg, wire.Heartbeat) and msg.sent is not None:
            held.append(msg.sent)
            if len(held) > 1:  # the one before, echoed now: a round trip of a heartbeat's period
                router.send_multipart([ident, wire.pack(wire.Heartbeat(echo=held.pop(0)))])
    assert first == 1  # its batch, before any round trip was measured
    assert widest == 5  # a round trip's worth of frames, bounded by --max-window
    assert daemons.stop("worker") == 0
    assert daemons.stats("worker")["window"] == 5
