"""Whatever reaches the sink's PULL socket, garbage or well formed but wrong, is counted and
dropped, and the running sink still turns a real clip into events."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgpack
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camwire.common import wire
from conftest import ROOT
from garbage import PoolOracle, invented, spoiled

KEYS = ["v", "kind", "camera", "seq", "ts_ns", "width", "height", "state", "detections", "flags", "error",
        "results", "workers", "label", "confidence", "box", "active", "boxes", "started_ns"]
values = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True),
                   st.text(max_size=80), st.binary(max_size=16),
                   st.sampled_from(["result", "status", "eos", "workers", "motion", "frame", "ready", "event",
                                    "online"]),
                   st.lists(st.integers(-2**63, 2**63 - 1), max_size=3))
maps = st.dictionaries(st.sampled_from(KEYS), values, max_size=8).map(lambda d: msgpack.packb(d, use_bin_type=True))
# well formed, but not for the sink: another daemon's kinds, bad names, NaN, a result with three parts
ok_result = wire.Result(camera="elsewhere", seq=1, ts_ns=1, width=2, height=2)
wrong = st.sampled_from([
    [wire.pack(wire.Ready(worker="w", credits=1))],
    [wire.pack(wire.Heartbeat())],
    [wire.pack(wire.Event(id="x", type="motion", camera="c", ts=1.0))],
    [wire.pack(ok_result), b"\xff\xd8", b"third part"],
    [wire.pack(wire.Status(camera="c", state="online", ts_ns=1)), b"a status has one part"],
    [msgpack.packb({"v": 1, "kind": "result", "camera": "no spaces allowed", "seq": 1, "ts_ns": 1,
                    "width": 2, "height": 2})],
    [msgpack.packb({"v": 1, "kind": "result", "camera": "c", "seq": 1, "ts_ns": 1, "width": 2, "height": 2,
                    "detections": [{"label": "x", "confidence": 0.5, "box": [0, 0, float("nan"), 1]}]})],
    [msgpack.packb({"v": 1, "kind": "status", "camera": "c", "state": "online", "ts_ns": 2**63})],
    [wire.pack(wire.Motion(camera="c", active=True, ts_ns=1)), b"a motion state has one part"],
    [msgpack.packb({"v": 1, "kind": "motion", "camera": "c", "active": True, "ts_ns": 1,
                    "boxes": [[0, 0, float("nan"), 1]]})],
    [msgpack.packb({"v": 1, "kind": "motion", "camera": "c", "active": "yes", "ts_ns": 1})],
    [msgpack.packb({"v": 2, "kind": "result"})],
])
messages = st.one_of(st.lists(st.one_of(st.binary(max_size=64), maps), min_size=1, max_size=3), wrong,
                     spoiled(("result", "status", "eos", "motion")), invented(("result", "status", "eos", "motion")))
POOL = 16  # the sink's --max-cameras here: the invented names fill it


def accepted(parts: list[bytes]) -> wire.Message | None:
    """What the sink takes, by the wire format's own definition (None: malformed for it)."""
    if not 1 <= len(parts) <= 2:
        return None
    try:
        msg = wire.unpack(parts[0])
    except wire.MalformedMessage:
        return None
    taken = isinstance(msg, (wire.Result, wire.Status, wire.Eos, wire.Motion, wire.Workers)) and (
        len(parts) == 1 or isinstance(msg, wire.Result))
    return msg if taken else None


def start_shapes_worker(daemons, p, name: str) -> None:
    """A worker that finds the sample clip's moving shapes as objects (tests/pipeline/shapes_worker.py)
    and its covered stretch, started and stopped like the others."""
    log = open(daemons.tmp / f"{name}.log", "wb")
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    daemons.procs[name] = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "pipeline" / "shapes_worker.py"), "classifier", "--connect", p.backend,
         "--sink", p.results, "--detector", "shapes+covered", "--name", name, "--stats",
         str(daemons.stats_path(name))], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def test_garbage_is_counted_and_dropped_then_a_clip_becomes_events(pipeline_factory, daemons, zctx,
                                                                   sample_clip: Path) -> None:
    p = pipeline_factory(until="real", sink_args=("--max-cameras", str(POOL)))
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(p.results)
    sent = {"bad": 0, "taken": 0}
    pool = PoolOracle(POOL, configured=("real",))  # the names the sink keeps, and the messages it refuses

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(messages)
    def throw(parts: list[bytes]) -> None:
        push.send_multipart(parts)
        msg = accepted(parts)
        sent["taken" if msg is not None else "bad"] += 1
        if msg is not None and not isinstance(msg, wire.Workers):
            pool.admits(msg.camera)

    throw()
    for i in range(2 * POOL):  # names past the pool whatever hypothesis drew
        push.send(wire.pack(wire.Status(camera=f"invented{i}", state="offline", ts_ns=1)))
        pool.admits(f"invented{i}")
    assert sent["bad"] > 100 and pool.refused  # most are garbage; an invented name past the pool is refused
    start_shapes_worker(daemons, p, "worker-1")
    # every sampled frame to the worker (not only those with motion): a known number of results
    p.extractor("real", str(sample_clip), extra=("--every", "3", "--detect", "always"))
    p.events.wait_for(lambda e: e["camera"] == "real" and e["type"] == "camera_covered")
    assert daemons.wait("sink", timeout=120) == 0
    push.close()
    stats = daemons.stats("sink")
    assert sum(stats["malformed"].values()) == sent["bad"]  # each one counted, once
    assert sum(stats["cameras_refused"]["pool_full"].values()) == pool.refused  # an invented name past the pool
    assert set(stats["cameras"]) <= pool.placed | {"real"}
    assert stats["results"]["real"] == 100
    assert {"camera_online", "motion_start", "motion_end", "object", "camera_covered",
            "camera_uncovered"} <= set(stats["events"])
    # the box and the disc (more than once each: the covered stretch hides them), each started and ended
    assert stats["objects"]["real"]["start"] == stats["objects"]["real"]["end"] >= 2
