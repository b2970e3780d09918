"""A classifier worker as a process over TCP: frames it cannot take, messages that are not the
wire format, a detection thread that dies, and addresses that lead nowhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camwire.common import wire
from conftest import ROOT, bound, tcp, wait_log
from garbage import noise, spoiled, wrong_kind
from test_ventilator_daemon import EVERY, HUGE, clip_passes_whole, push

HERE = Path(__file__).resolve().parent


def test_a_2gib_frame_gets_a_result_with_an_error_and_the_clip_after_it_passes_whole(
        pipeline_factory, daemons, zctx, sample_clip: Path) -> None:
    # the ventilator lets it through (its limit is higher); the worker's own limit refuses it
    p = pipeline_factory(until="gen", vent_args=("--max-frame-bytes", "4G"))
    p.worker("worker-1", "covered")
    push(zctx, p.frontend, [wire.frame_parts(HUGE, b"\0" * 64)])
    p.extractor("gen", str(sample_clip), extra=EVERY)
    sent = clip_passes_whole(p, daemons)
    assert daemons.stop("ventilator") == 0 and daemons.stop("worker-1") == 0
    vent, worker, sink = daemons.stats("ventilator"), daemons.stats("worker-1"), daemons.stats("sink")
    assert worker["malformed"] == {"too_large": 1} and worker["failed"] == {"malformed_too_large": 1}
    assert vent["completed"] == {"big": 1, "gen": sent}  # answered, so completed: its credit came back
    assert sink["results"]["big"] == 1
    assert worker["processed"] == {"gen": sent}


def test_garbage_into_a_worker_is_counted_and_dropped(daemons, zctx, sample_clip: Path) -> None:
    """The test is the worker's ventilator and sink: garbage first, then a real clip's frames."""
    (router, backend), (sink, results), (frames_in, frontend) = (bound(zctx, zmq.ROUTER), bound(zctx, zmq.PULL),
                                                                 bound(zctx, zmq.PULL))
    daemons.start("worker", "classifier", "--connect", backend, "--sink", results, "--detector", "covered",
                  "--name", "w1")
    assert router.poll(30_000)
    ident, first = router.recv_multipart()
    assert ident == b"w1" and isinstance(wire.unpack(first), wire.Ready)
    sent = [0]

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.one_of(noise(), spoiled(("reset", "heartbeat", "status", "eos", "frame")),
                              wrong_kind(("ready", "frame"))), max_size=6))
    def send(messages: list[list[bytes]]) -> None:
        for parts in messages:
            router.send_multipart([ident, *parts])
        sent[0] += len(messages)

    send()
    assert sent[0]
    # then a real clip, frame by frame, as a ventilator would hand it over
    daemons.start("extractor-gen", "extractor", "--camera", "gen", "--source", str(sample_clip), "--push", frontend,
                  *EVERY)
    relayed, answered = 0, []
    while True:
        if not frames_in.poll(20_000):
            break  # the extractor is done
        parts = frames_in.recv_multipart()
        if len(parts) != 2:
            continue  # status and eos are not the worker's to see here
        router.send_multipart([ident, *parts])
        relayed += 1
        assert sink.poll(30_000), "no result from the worker"
        answered.append(wire.unpack(sink.recv_multipart()[0]))
    assert daemons.wait("extractor-gen") == 0
    assert daemons.stop("worker") == 0
    stats = daemons.stats("worker")
    assert relayed == daemons.stats("extractor-gen")["gen"]["sent"]
    assert [(r.camera, r.seq, r.error) for r in answered] == [("gen", s, None) for s in range(0, 300, 5)]
    assert sum(stats["malformed"].values()) == sent[0]
    assert "errors" not in stats and "failed" not in stats
    assert stats["processed"] == {"gen": relayed}


def start_patched_worker(daemons, p, detector: str) -> None:
    """A worker with worker_dies_once.py's extra detectors, started and stopped like the others."""
    log = open(daemons.tmp / "worker-1.log", "wb")
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    daemons.procs["worker-1"] = subprocess.Popen(
        [sys.executable, str(HERE / "worker_dies_once.py"), "classifier", "--connect", p.backend, "--sink",
         p.results, "--detector", detector, "--name", "worker-1", "--stats", str(daemons.stats_path("worker-1"))],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def test_a_dead_detection_thread_is_restarted_and_its_frame_answered(
        pipeline_factory, daemons, sample_clip: Path) -> None:
    p = pipeline_factory(until="gen")
    start_patched_worker(daemons, p, "dies")
    p.extractor("gen", str(sample_clip), extra=EVERY)
    sent = clip_passes_whole(p, daemons)  # every frame answered, the one the thread held too
    assert daemons.stop("worker-1") == 0 and daemons.stop("ventilator") == 0
    worker, vent = daemons.stats("worker-1"), daemons.stats("ventilator")
    assert worker["thread_restarts"] == {"detection": 1}
    assert worker["failed"] == {"detection_died": 1}
    assert worker["processed"] == {"gen": sent - 1}
    assert vent["completed"] == {"gen": sent} and "dropped" not in vent


def test_wrong_addresses_are_warned_about_and_sends_never_block(daemons) -> None:
    connect, sink = tcp(), tcp()  # nobody there
    proc = daemons.start("worker", "classifier", "--connect", connect, "--sink", sink, "--detector", "covered",
                         "--name", "w1")
    log = daemons.tmp / "worker.log"
    for addr in (connect, sink):
        wait_log(log, lambda r, a=addr: r.get("address") == a and r.get("level") == "warning", timeout=30, proc=proc)
    assert daemons.stop("worker", timeout=10) == 0  # heartbeats and the leaving ready never waited


def test_a_detector_failing_on_every_frame_logs_once_and_answers_every_frame(
        pipeline_factory, daemons, sample_clip: Path) -> None:
    p = pipeline_factory(until="gen")
    start_patched_worker(daemons, p, "fails")
    p.extractor("gen", str(sample_clip), extra=EVERY)
    sent = clip_passes_whole(p, daemons)  # each frame has its result, with the error in it
    assert daemons.stop("worker-1") == 0
    worker = daemons.stats("worker-1")
    assert worker["detector_errors"] == {"RuntimeError": sent}
    records = [json.loads(line) for line in (daemons.tmp / "worker-1.log").read_text().splitlines()]
    failures = [r for r in records if "the model is broken" in str(r.get("error"))]
    assert len(failures) == 1 and "exception" in failures[0]  # one line (a traceback once), not one per frame
    assert not [e for e in p.events_written() if e.get("worker")]  # no event from a result


def test_sighup_reloads_both_daemons_and_frames_keep_flowing(pipeline_factory, daemons, sample_clip: Path) -> None:
    p = pipeline_factory(until="gen")
    p.worker("worker-1", "covered")
    p.extractor("gen", str(sample_clip), extra=("--realtime", *EVERY))
    p.events.wait_type("motion_start")  # both loops are running (their handlers are in place)
    for name in ("ventilator", "worker-1"):
        daemons.procs[name].send_signal(signal.SIGHUP)
    for name in ("ventilator", "worker-1"):
        wait_log(daemons.tmp / f"{name}.log", lambda r: r.get("event") == "reloading", timeout=30)
    clip_passes_whole(p, daemons)
    for name in ("ventilator", "worker-1"):
        assert daemons.stop(name) == 0
        assert daemons.stats(name)["reloads"] == {"applied": 1}
