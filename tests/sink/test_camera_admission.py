"""Invented camera names never lock a real camera out (common.admission), with real daemons over TCP:
1,000 made-up names fill the ventilator's and the sink's pools, and a camera named in the config
still passes whole; without a config, a pool freed by idleness takes a new camera."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable
from urllib.error import URLError

import zmq

from camwire.sink.store.status_db import read_status
from camwire.common import wire
from conftest import free_port, scrape, value
from test_sink_garbage import start_shapes_worker

N = 1000
EVERY = ("--every", "5")  # 60 of the clip's 300 frames: quick, and still the whole clip
TS = time.time_ns()


def config(tmp: Path, camera: str, clip: Path) -> str:
    path = tmp / "camwire.toml"
    # the shapes worker's "box" and "disc" are no people: every label tracked
    path.write_text(f'[cameras.{camera}]\nurl = "{clip}"\n[cameras.{camera}.rules]\nlabels = ["*"]\n')
    return str(path)


def flood(zctx: zmq.Context, addr: str, kinds: tuple[str, ...], prefix: str = "fake") -> None:
    """One message of each of ``kinds`` for each of N invented cameras, from one peer."""
    sock = zctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 10_000)
    sock.connect(addr)
    for i in range(N):
        camera = f"{prefix}{i:04d}"
        for kind in kinds:
            if kind == "frame":
                head = wire.FrameHeader(camera=camera, seq=0, ts_ns=TS, width=8, height=8, prev=-1)
                sock.send_multipart(wire.frame_parts(head, b"\x80" * 192))
            elif kind == "status":
                sock.send(wire.pack(wire.Status(camera=camera, state="online", ts_ns=TS)))
            elif kind == "motion":
                sock.send(wire.pack(wire.Motion(camera=camera, active=True, ts_ns=TS)))
            else:
                sock.send(wire.pack(wire.Result(camera=camera, seq=0, ts_ns=TS, width=8, height=8, prev=-1,
                                                detections=[wire.Detection("person", 0.9, (1.0, 1.0, 6.0, 6.0))])))
    sock.close()  # lingers until all is delivered


def metric(port: int, name: str, **labels: str) -> float | None:
    """The daemon's metric now; None while it does not serve its metrics yet (starting)."""
    try:
        return value(scrape(port), name, **labels)
    except URLError:
        return None


def wait_metric(port: int, name: str, done: Callable[[float], bool], timeout: float = 120.0,
                **labels: str) -> float:
    """The metric once ``done`` says so of it (the daemon's own word that it got there)."""
    deadline = time.monotonic() + timeout
    while (got := metric(port, name, **labels)) is None or not done(got):
        assert time.monotonic() < deadline, f"{name}{labels} at {got} after {timeout}s"
        time.sleep(0.2)  # metrics have no change notification to await
    return got


def wait_counted(port: int, name: str, want: int, **labels: str) -> None:
    """Until the counter ``name`` reaches ``want``; then it must be exactly that."""
    got = wait_metric(port, name, lambda n: n >= want, **labels)
    assert got == want, f"{name}{labels}: {got}, not {want}"


def test_1000_invented_names_then_a_configured_camera_passes_whole_through_ventilator_and_sink(
        pipeline_factory, daemons, zctx, tmp_path: Path, sample_clip: Path) -> None:
    cfg = config(tmp_path, "gen", sample_clip)
    vent_port, sink_port = free_port(), free_port()
    p = pipeline_factory(until="gen", vent_args=("--config", cfg, "--metrics-port", str(vent_port)),
                         sink_args=("--config", cfg, "--max-cameras", "64", "--metrics-port", str(sink_port)))
    p.worker("worker-1", "covered")
    flood(zctx, p.frontend, ("frame", "status"))
    # the ventilator keeps 256 of them (its default pool); each other name's frame and status are refused
    wait_counted(vent_port, "camwire_ventilator_cameras_refused_total", 2 * (N - 256), reason="pool_full",
                 peer="127.0.0.1")
    # the 256 it kept reach the sink (a status and a result each), whose pool keeps 64
    wait_counted(sink_port, "camwire_sink_cameras_refused_total", 2 * (256 - 64), reason="pool_full")

    p.extractor("gen", str(sample_clip), extra=EVERY)
    assert daemons.wait("sink", timeout=120) == 0  # it exits once gen has drained
    assert daemons.wait("extractor-gen") == 0
    assert daemons.stop("ventilator") == 0 and daemons.stop("worker-1") == 0
    sent = daemons.stats("extractor-gen")["gen"]["sent"]
    vent, sink = daemons.stats("ventilator"), daemons.stats("sink")
    assert sent > 0 and vent["received"]["gen"] == vent["completed"]["gen"] == sent
    assert sink["results"]["gen"] == sent  # every frame of the configured camera
    assert len(sink["cameras"]) == 65  # the pool's 64 and gen: nothing of the rest is held
    assert "malformed" not in vent and "malformed" not in sink


def test_1000_invented_names_at_the_sink_then_a_configured_cameras_events_are_all_made(
        pipeline_factory, daemons, zctx, tmp_path: Path, sample_clip: Path) -> None:
    cfg = config(tmp_path, "real", sample_clip)
    sink_port = free_port()
    p = pipeline_factory(sink_args=("--config", cfg, "--max-cameras", "16", "--metrics-port", str(sink_port)))
    flood(zctx, p.results, ("status", "result", "motion"))
    wait_counted(sink_port, "camwire_sink_cameras_refused_total", 3 * (N - 16), reason="pool_full", peer="127.0.0.1")
    assert value(scrape(sink_port), "camwire_sink_cameras") == 16

    start_shapes_worker(daemons, p, "worker-1")
    # every sampled frame to the worker (not only those with motion): a known number of results
    p.extractor("real", str(sample_clip), extra=("--every", "3", "--detect", "always"))
    assert daemons.wait("extractor-real") == 0
    sent = daemons.stats("extractor-real")["real"]["sent"]
    wait_counted(sink_port, "camwire_sink_results_total", sent, camera="real")
    # the clip's covered stretch ends 4 s before it does: seen after every result is in
    p.events.wait_for(lambda e: e["camera"] == "real" and e["type"] == "camera_uncovered")
    assert daemons.stop("sink") == 0  # objects still open end with the sink
    stats = daemons.stats("sink")
    assert stats["results"]["real"] == sent
    assert {"camera_online", "motion_start", "motion_end", "object", "camera_covered",
            "camera_uncovered"} <= set(stats["events"])
    assert stats["objects"]["real"]["start"] == stats["objects"]["real"]["end"] >= 2
    assert set(stats["cameras"]) - {f"fake{i:04d}" for i in range(16)} == {"real"}


def test_without_a_config_an_idle_flood_is_forgotten_and_a_new_camera_gets_its_place(
        pipeline_factory, daemons, zctx, sample_clip: Path) -> None:
    vent_port = free_port()
    p = pipeline_factory(until="late",
                         vent_args=("--max-cameras", "8", "--camera-idle", "1s", "--metrics-port", str(vent_port)))
    p.worker("worker-1", "covered")
    flood(zctx, p.frontend, ("status",))
    wait_counted(vent_port, "camwire_ventilator_cameras_refused_total", N - 8, reason="pool_full")
    # none of the flood's names speaks again: a second later the pool is empty
    wait_metric(vent_port, "camwire_ventilator_cameras_known", lambda n: n == 0)
    p.extractor("late", str(sample_clip), extra=EVERY)
    assert daemons.wait("sink", timeout=120) == 0
    assert daemons.stop("ventilator") == 0
    sent = daemons.stats("extractor-late")["late"]["sent"]
    vent = daemons.stats("ventilator")
    assert vent["received"]["late"] == vent["completed"]["late"] == sent
    assert vent["received"].get("other", 0) == 0  # a status is not a frame: the flood received none
    assert sum(vent["cameras_refused"]["pool_full"].values()) == N - 8


def test_the_sink_forgets_an_idle_camera_everywhere_and_takes_a_new_one(pipeline_factory, daemons, zctx) -> None:
    sink_port = free_port()
    p = pipeline_factory(sink_args=("--max-cameras", "16", "--silent-after", "1s", "--camera-idle", "1s",
                                    "--metrics-port", str(sink_port)))
    flood(zctx, p.results, ("status", "result"))
    wait_counted(sink_port, "camwire_sink_cameras_refused_total", 2 * (N - 16), reason="pool_full")
    status = p.data_dir / "status.db"
    metrics = scrape(sink_port)
    assert value(metrics, "camwire_result_latency_seconds_count", camera="fake0000") == 1
    assert value(metrics, "camwire_sink_capture_to_result_seconds", camera="fake0000") > 0
    # silent: told offline first (after 1 s), then forgotten (twice --silent-after, 2 s)
    p.events.wait_for(lambda e: e["type"] == "camera_offline" and e["camera"] == "fake0015")
    wait_metric(sink_port, "camwire_sink_cameras", lambda n: n == 0)
    metrics = scrape(sink_port)
    assert value(metrics, "camwire_result_latency_seconds_count", camera="fake0000") == 0  # its series went too
    assert not [labels for labels, _ in metrics.get("camwire_sink_capture_to_result_seconds", [])
                if labels.get("camera") == "fake0000"]  # its moving average too
    assert value(metrics, "camwire_sink_results_total", camera="other") == 16  # its count stays, as other
    deadline = time.monotonic() + 60
    while (rows := read_status(status)[0]):  # the rows go at the next flush
        assert time.monotonic() < deadline, [r["camera"] for r in rows]
        time.sleep(0.2)  # status.db has no change notification to await
    # the pool has room again: a new camera is taken
    flood_one = zctx.socket(zmq.PUSH)
    flood_one.setsockopt(zmq.LINGER, 5000)
    flood_one.connect(p.results)
    flood_one.send(wire.pack(wire.Status(camera="newcomer", state="online", ts_ns=TS)))
    flood_one.close()
    p.events.wait_for(lambda e: e["type"] == "camera_online" and e["camera"] == "newcomer")
    assert daemons.stop("sink") == 0
    assert daemons.stats("sink")["cameras_refused"]["pool_full"]["127.0.0.1"] == 2 * (N - 16)
