"""A change of motion from a file read as fast as the pool takes it waits for room as the file's
frames do: however long the pool keeps the socket full, the change is told. (It used to wait 2 s
and be dropped, to be repeated with the next status heartbeat: a short file's whole run is
shorter than that, so a start lost there was never told and the sink, hearing first of an end,
said nothing of the stretch.) A live camera's change still waits a little, then is counted.

Real ZeroMQ sockets in one process: the camera thread's Emitter, its PUSH socket full (two
messages queued, PUSH_HWM, nobody at the address yet), and a PULL that binds later."""

from __future__ import annotations

import threading
from pathlib import Path

import structlog
import zmq

from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.lifecycle import StopFlag
from camwire.common.sockets import PeerWatch, make_socket
from camwire.extractor import emitter
from camwire.extractor.camera import PUSH_HWM
from camwire.extractor.emitter import CameraCounters, Emitter


def test_a_file_s_change_of_motion_waits_for_the_pool_and_a_live_one_is_counted(zctx, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    monkeypatch.setattr(emitter, "CONTROL_SEND_TIMEOUT_MS", 10)  # a live change's wait, short here
    addr, log, counters = f"ipc://{tmp_path}/pool", structlog.get_logger(), Counters()
    push = make_socket(zctx, zmq.PUSH, sndhwm=PUSH_HWM, linger=0)
    out = Emitter(push, PeerWatch(push, addr, log), None, CameraCounters(counters, "cam"), log, StopFlag(),
                  None, camera="cam")
    fillers = [wire.pack(wire.Status(camera="cam", state="online", ts_ns=i)) for i in range(PUSH_HWM)]
    for body in fillers:
        push.send(body, zmq.NOBLOCK)
    assert not push.poll(0, zmq.POLLOUT)  # full

    start = wire.Motion(camera="cam", active=True, ts_ns=1, seq=1, boxes=[(0.0, 0.0, 8.0, 8.0)])
    out.say_motion(start, wait=False)  # a live camera's: dropped, counted, said again with the heartbeat
    assert counters.get("dropped", "cam", "motion") == 1 and out.motion_said == start

    end = wire.Motion(camera="cam", active=False, ts_ns=2, started_ns=1, seq=2)
    said = threading.Thread(target=out.say_motion, args=(end,), kwargs={"wait": True})
    said.start()
    said.join(0.5)  # fifty times the live wait, and it still waits for the pool
    assert said.is_alive()
    pull = make_socket(zctx, zmq.PULL, bind=addr, linger=0)
    try:
        got = []
        while len(got) < len(fillers) + 1:
            assert pull.poll(30_000), got
            got.append(pull.recv())
        said.join(30)
        assert got == [*fillers, wire.pack(end)]
        assert counters.get("dropped", "cam", "motion") == 1  # the file's change was not dropped
    finally:
        out.stop.set()
        said.join(30)
        pull.close()
        out.peer.close()
        push.close()
