"""Several ventilators, each owning a group of cameras, and workers connected to all of them, as
processes over TCP: both groups' cameras get results, and a worker killed with frames in hand
costs each ventilator exactly the frames that ventilator had sent it (``worker_lost`` in that
ventilator's frame account), while the other worker carries on for both groups. The test is the
extractors: it pushes each group's frames to its ventilator's frontend, as an extractor does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import zmq

from camwire.common import wire
from camwire.common.config import ConfigError, load_config
from camwire.sink.store.status_db import read_status
from conftest import ROOT, SHAPES_RULES, free_port, scrape, subscribe, tcp, value

HERE = Path(__file__).resolve().parent
GROUPS = {"a": ("a1", "a2"), "b": ("b1", "b2")}  # ventilator -> the cameras whose extractors push to it
W, H = 64, 48


@dataclass
class Vent:
    frontend: str
    backend: str
    metrics_port: int
    push: zmq.Socket | None = None


class Feed:
    """The extractors of both groups: a live frame of every camera to its ventilator each round,
    and the sink's published results (``--publish-detections``) read between rounds."""

    def __init__(self, zctx: zmq.Context, vents: dict[str, Vent], results: zmq.Socket) -> None:
        self.vents, self.results = vents, results
        for vent in vents.values():
            vent.push = zctx.socket(zmq.PUSH)
            vent.push.setsockopt(zmq.LINGER, 0)
            vent.push.connect(vent.frontend)
        self.seq = 0
        self.seen: list[wire.Result] = []

    def until(self, done: Callable[[], bool], timeout: float = 60.0) -> None:
        """A round of frames, then the results that came within 100 ms of it, until ``done()``."""
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"not done within {timeout}s; results by camera: {self.by_camera()}"
            for group, cameras in GROUPS.items():
                for camera in cameras:
                    header = wire.FrameHeader(camera=camera, seq=self.seq, ts_ns=time.time_ns(), width=W, height=H)
                    try:
                        self.vents[group].push.send_multipart(  # type: ignore[union-attr]
                            wire.frame_parts(header, bytes(W * H * 3)), flags=zmq.NOBLOCK)
                    except zmq.Again:
                        pass  # the ventilator is not there yet: dropped, as an extractor drops it
            self.seq += 1
            if self.results.poll(100):
                while self.results.poll(0):
                    result = wire.unpack(self.results.recv())
                    assert isinstance(result, wire.Result)
                    self.seen.append(result)

    def by_camera(self, since: int = 0, worker: str | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.seen[since:]:
            if worker is None or r.worker == worker:
                out[r.camera] = out.get(r.camera, 0) + 1
        return out


def metric(port: int, name: str, **labels: str) -> float | None:
    """A ventilator's metric now; None while its metrics server is not up yet."""
    try:
        return value(scrape(port), name, **labels)
    except (urllib.error.URLError, ConnectionError):
        return None


def start_holder(daemons, connect: list[str], sink: str) -> None:
    """A worker whose detector never returns (worker_dies_once.py's ``holds``): it keeps the frames
    it took, one from each ventilator (its first window), until it is killed."""
    log = open(daemons.tmp / "holder.log", "wb")
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    daemons.procs["holder"] = subprocess.Popen(
        [sys.executable, str(HERE / "worker_dies_once.py"), "classifier", *connect, "--sink", sink,
         "--detector", "holds", "--name", "holder", "--stats", str(daemons.stats_path("holder"))],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def test_two_ventilators_share_two_workers_and_a_killed_worker_costs_each_only_its_own_frames(
        daemons, zctx, tmp_path: Path) -> None:
    results, published = tcp(), tcp()
    daemons.start("sink", "sink", "--bind", results, "--publish-detections", published, "--data-dir",
                  str(tmp_path / "data"), "--events", str(tmp_path / "events.jsonl"), "--rules", str(SHAPES_RULES))
    vents = {g: Vent(tcp(), tcp(), free_port()) for g in GROUPS}
    for g, vent in vents.items():
        daemons.start(f"vent-{g}", "ventilator", "--frontend", vent.frontend, "--backend", vent.backend,
                      "--heartbeat-timeout", "1s", "--metrics-port", str(vent.metrics_port))
    connect = [w for vent in vents.values() for w in ("--connect", vent.backend)]
    start_holder(daemons, connect, results)
    daemons.start("worker", "classifier", *connect, "--sink", results, "--detector", "covered", "--name", "worker")
    feed = Feed(zctx, vents, subscribe(zctx, published))

    # every camera of both groups gets results, and the holder holds a frame of each ventilator
    def holding() -> bool:
        return all(metric(v.metrics_port, "camwire_ventilator_worker_in_flight", worker="holder") == 1
                   for v in vents.values())

    feed.until(lambda: set(feed.by_camera(worker="worker")) == {c for cs in GROUPS.values() for c in cs}
               and holding())

    daemons.procs["holder"].send_signal(signal.SIGKILL)
    daemons.wait("holder")
    # each ventilator forgets it and counts the one frame it had sent it; nothing of the other group's
    feed.until(lambda: all(metric(v.metrics_port, "camwire_ventilator_workers") == 1 for v in vents.values()))
    since = len(feed.seen)
    feed.until(lambda: all(feed.by_camera(since).get(c, 0) >= 3 for cs in GROUPS.values() for c in cs))
    assert {r.worker for r in feed.seen[since:]} == {"worker"}  # the other worker carries on for both groups

    # the sink's workers table: the worker's frames of both ventilators, summed (not the last report's)
    def dispatched(v: Vent) -> float | None:
        return metric(v.metrics_port, "camwire_ventilator_workers_total", worker="worker", what="dispatched")

    deadline = time.monotonic() + 60
    while True:
        each = [dispatched(v) for v in vents.values()]  # frames stopped: these no longer move
        rows = {w["name"]: w for w in read_status(tmp_path / "data" / "status.db")[1]}
        # the killed holder is gone from the table (it sent no result), and the worker's count is
        # both ventilators' (each sent it frames of its own group)
        if set(rows) == {"worker"} and all(each) and rows["worker"]["dispatched"] == sum(each):  # type: ignore
            break
        assert time.monotonic() < deadline, (rows, each)
        time.sleep(0.2)  # status.db is rewritten by the sink (a file has no event), the reports every 2 s

    for name in ("worker", "vent-a", "vent-b"):
        assert daemons.stop(name) == 0
    for g, cameras in GROUPS.items():
        vent = daemons.stats(f"vent-{g}")
        lost = {camera: reasons["worker_lost"] for camera, reasons in vent.get("dropped", {}).items()
                if "worker_lost" in reasons}
        assert sum(lost.values()) == 1 and set(lost) <= set(cameras), (g, lost)
        accounts = vent["accounts"]
        assert set(accounts) == set(cameras)  # a ventilator accounts only for its own group's cameras
        assert sum(a["worker_lost"] for a in accounts.values()) == 1
        # every done came back to the ventilator that sent the frame: none for frames it never sent
        assert "late" not in vent, vent.get("late")
        assert vent["workers_forgotten"].get("unreachable", 0) + vent["workers_forgotten"].get("heartbeat", 0) == 1
    worker = daemons.stats("worker")
    assert set(worker["ventilators"]) == {v.backend for v in vents.values()}


def test_a_ventilator_that_goes_away_costs_only_its_own_link(daemons, zctx, tmp_path: Path) -> None:
    """One ventilator killed: the other group's cameras flow on through the same worker; started
    again at its address, it tells the worker it does not know it (``reset``), and that link alone
    asks for work anew."""
    results, published = tcp(), tcp()
    daemons.start("sink", "sink", "--bind", results, "--publish-detections", published, "--data-dir",
                  str(tmp_path / "data"), "--events", str(tmp_path / "events.jsonl"), "--rules", str(SHAPES_RULES))
    vents = {g: Vent(tcp(), tcp(), free_port()) for g in GROUPS}

    def start_vent(g: str) -> None:
        daemons.start(f"vent-{g}", "ventilator", "--frontend", vents[g].frontend, "--backend", vents[g].backend)

    for g in GROUPS:
        start_vent(g)
    daemons.start("worker", "classifier", *[w for v in vents.values() for w in ("--connect", v.backend)],
                  "--sink", results, "--detector", "covered", "--name", "worker")
    feed = Feed(zctx, vents, subscribe(zctx, published))
    every = {c for cs in GROUPS.values() for c in cs}
    feed.until(lambda: set(feed.by_camera()) == every)

    daemons.procs["vent-b"].send_signal(signal.SIGKILL)
    daemons.wait("vent-b")
    since = len(feed.seen)
    feed.until(lambda: all(feed.by_camera(since).get(c, 0) >= 5 for c in GROUPS["a"]))  # group a flows on

    start_vent("b")  # the same address: the worker's link reconnects, is reset, and asks anew
    since = len(feed.seen)
    feed.until(lambda: set(feed.by_camera(since)) == every)
    for name in ("worker", "vent-a", "vent-b"):
        assert daemons.stop(name) == 0
    assert "late" not in daemons.stats("vent-a")  # nothing of the other link's frames came to it


def test_a_config_file_lists_several_ventilators_for_the_workers(tmp_path: Path) -> None:
    """``[sockets] backend`` as a list fills every worker's --connect; each ventilator binds one, so
    the file must give it its own, or it is refused at the list's line."""
    config = tmp_path / "camwire.toml"
    sockets = '[sockets]\nbackend = ["tcp://vent-a:5556", "tcp://vent-b:5556"]\nresults = "tcp://sink:5557"\n'
    config.write_text(sockets)
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert refused.value.line == 2 and "[ventilator] backend" in refused.value.reason
    config.write_text(sockets + '[ventilator]\nbackend = "tcp://*:5556"\n')
    cfg = load_config(config)
    assert cfg.settings("classifier").connect == ["tcp://vent-a:5556", "tcp://vent-b:5556"]
    assert cfg.settings("classifier").sink == ["tcp://sink:5557"]
    assert cfg.settings("ventilator").backend == "tcp://*:5556"
