"""Several sinks (common.sinks) over real sockets: each camera's events go to the sink that owns
it, in order, and a sink that is not there holds back only its own cameras' events, never the
others' (the recorder's notices and uploaded clips)."""

from __future__ import annotations

from pathlib import Path

import zmq

from camwire.common import wire
from camwire.common.daemon import Daemon
from camwire.common.settings.model import section
from camwire.common.settings.shared import DaemonOptions, FileOptions
from camwire.common.sinks import Sinks, sink_of
from conftest import cameras_for

TestdSettings = section("TestdSettings", FileOptions, DaemonOptions)


def event(camera: str, n: int) -> wire.Event:
    return wire.Event(id=f"{camera}-{n}", type="recording_resumed", camera=camera, ts=float(n))


def test_a_sink_away_holds_back_only_its_own_cameras_events(tmp_path: Path) -> None:
    d = Daemon("testd", TestdSettings(stats=str(tmp_path / "stats.json")))
    addrs = sorted(f"ipc://{tmp_path}/sink{i}" for i in range(2))
    cameras = cameras_for(addrs, 3)  # each sink owns some, whatever the tmp path
    up, down = addrs
    mine = [c for c in cameras if sink_of(c, addrs) == up]
    theirs = [c for c in cameras if sink_of(c, addrs) == down]
    pull = d.ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(up)  # the other sink is not there
    sinks = Sinks(d, [down, up], sndhwm=10, linger=0, immediate=True)  # as written, in any order
    assert sinks.socks[up].poll(30_000, zmq.POLLOUT)  # connected (immediate: writable only then)
    events = [event(c, n) for n in range(2) for c in (theirs[0], mine[0])]
    taken = sinks.send_events(events)
    assert taken == [e for e in events if e.camera == mine[0]]  # in order; the away sink's wait
    got = [wire.unpack(pull.recv()) for _ in taken]
    assert [e.id for e in got] == [e.id for e in taken]
    for p in sinks.peers:
        p.close()
    pull.close()
    d.run(until=lambda: True)  # the skeleton closes its sockets
