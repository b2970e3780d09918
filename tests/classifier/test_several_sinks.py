"""Several sinks, each owning a set of cameras, as processes over TCP: two workers given both sinks
(in a different order) send every result, status and pool account of a camera to the one sink
that owns it, the same one from both workers, chosen by rendezvous hashing of the camera's name
(classifier.sinks, common.rendezvous); what is not per camera (the workers' table) reaches both.
The test is the extractor: it pushes the cameras' frames and status to the ventilator."""

from __future__ import annotations

import time
from pathlib import Path

import zmq

from camwire.classifier.sinks import sink_of, split
from camwire.common import wire
from camwire.common.rendezvous import owner
from camwire.sink.store.status_db import read_status
from conftest import SHAPES_RULES, cameras_for, subscribe, tcp, wait_status

W, H = 64, 48
PER_SINK = 3


def test_a_pool_report_is_split_by_camera_and_its_workers_table_goes_to_every_sink() -> None:
    sinks = ["tcp://s1:5557", "tcp://s2:5557"]
    cameras = [f"cam{i}" for i in range(20)]
    report = wire.Workers(ts_ns=1, workers=[wire.WorkerLoad(name="w1")],
                          backlog={c: 1 for c in cameras}, accounts={c: wire.PoolAccount(received=1) for c in cameras},
                          unserved=[wire.Unserved(camera=c, detector="objects", frames=2) for c in cameras])
    parts = split(report, sinks)
    assert set(parts) == set(sinks)
    for sink, part in parts.items():
        assert part.workers == report.workers and part.ts_ns == 1
        mine = {c for c in cameras if sink_of(c, sinks) == sink}
        assert set(part.accounts) == set(part.backlog) == {u.camera for u in part.unserved} == mine
    assert sum(len(p.accounts) for p in parts.values()) == len(cameras)


def test_each_camera_goes_to_exactly_one_sink_the_same_from_every_worker(daemons, zctx, tmp_path: Path) -> None:
    sinks = {name: (tcp(), tcp(), tmp_path / name) for name in ("sink-1", "sink-2")}  # bind, detections, data
    for name, (bind, published, data) in sinks.items():
        daemons.start(name, "sink", "--bind", bind, "--publish-detections", published, "--data-dir", str(data),
                      "--events", str(data / "events.jsonl"), "--rules", str(SHAPES_RULES))
    frontend, backend = tcp(), tcp()
    daemons.start("ventilator", "ventilator", "--frontend", frontend, "--backend", backend)
    binds = [bind for bind, _, _ in sinks.values()]
    for name, order in (("worker-1", binds), ("worker-2", binds[::-1])):  # the same sinks, listed either way
        daemons.start(name, "classifier", "--connect", backend, *[w for b in order for w in ("--sink", b)],
                      "--detector", "covered", "--name", name)
    cameras = cameras_for(binds, PER_SINK)
    subs = {bind: subscribe(zctx, published) for bind, published, _ in sinks.values()}
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(frontend)
    for camera in cameras:  # what an extractor says first; it rides to the sink through a worker
        push.send(wire.pack(wire.Status(camera=camera, state="online", ts_ns=time.time_ns(), decoded=1, sent=1)))

    got: dict[str, set[str]] = {c: set() for c in cameras}  # camera -> the sinks its results reached
    workers: dict[str, set[str]] = {c: set() for c in cameras}  # camera -> the workers that answered it
    seq = 0
    deadline = time.monotonic() + 60
    while not all(w == {"worker-1", "worker-2"} for w in workers.values()):  # every camera from both workers
        assert time.monotonic() < deadline, f"not every camera answered by both workers: {workers}"
        for camera in cameras:
            header = wire.FrameHeader(camera=camera, seq=seq, ts_ns=time.time_ns(), width=W, height=H)
            push.send_multipart(wire.frame_parts(header, bytes(W * H * 3)))
        seq += 1
        poller = zmq.Poller()
        for sub in subs.values():
            poller.register(sub, zmq.POLLIN)
        for sub, _ in poller.poll(100):  # the results of this round, or 100 ms
            while sub.poll(0):
                result = wire.unpack(sub.recv())
                assert isinstance(result, wire.Result)
                got[result.camera].add(next(b for b, s in subs.items() if s is sub))
                workers[result.camera].add(result.worker)

    assert got == {c: {owner(c, binds)} for c in cameras}  # one sink each, the one rendezvous hashing names
    assert {s for sinks_of in got.values() for s in sinks_of} == set(binds)  # both sinks own some
    # the per-camera messages too: each camera's status and pool account in its own sink's status.db only
    for bind, _, data in sinks.values():
        mine = {c for c in cameras if owner(c, binds) == bind}
        for camera in mine:
            wait_status(data / "status.db", camera, lambda r: (r["pool"] or {}).get("processed", 0) > 0
                        and r["decoded"] == 1)
        assert {r["camera"] for r in read_status(data / "status.db")[0]} == mine
        wait_workers(data / "status.db", {"worker-1", "worker-2"})  # the pool's table reaches every sink


def wait_workers(path: Path, names: set[str], timeout: float = 30.0) -> None:
    """The sink's table of workers (status.db) once it names ``names``."""
    deadline = time.monotonic() + timeout
    while (shown := {w["name"] for w in read_status(path)[1]}) != names:
        assert time.monotonic() < deadline, f"workers in {path}: {shown}"
        time.sleep(0.1)  # SQLite has no change notification to await
