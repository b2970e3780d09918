"""The daemon skeleton every daemon runs on: threads watched, bad messages counted, SIGHUP, stats.

These run the skeleton in this process (its loop in the main thread, as in a daemon) over real
ZeroMQ sockets; each daemon's own tests run it as a real process."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import zmq

from camwire.common.settings.model import section
from camwire.common.settings.shared import DaemonOptions, FileOptions
from camwire.common import wire
from camwire.common.daemon import Daemon

TestdSettings = section("TestdSettings", FileOptions, DaemonOptions)  # a daemon with no settings of its own


def make(tmp_path: Path) -> Daemon:
    return Daemon("testd", TestdSettings(stats=str(tmp_path / "stats.json")))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_thread_is_restarted_and_counted(tmp_path: Path) -> None:
    d = make(tmp_path)
    runs: list[int] = []

    def crashing() -> threading.Thread:
        def body() -> None:
            runs.append(1)
            if len(runs) < 3:
                raise RuntimeError("boom")  # dies twice, then runs until told to stop
            d.stop.wait(30)
        return threading.Thread(target=body, daemon=True)

    d.watch("crasher", crashing)
    assert d.run(until=lambda: len(runs) >= 3) == 0
    assert d.counters.get("thread_restarts", "crasher") == 2
    assert json.loads((tmp_path / "stats.json").read_text())["thread_restarts"] == {"crasher": 2}


def test_a_fatal_thread_makes_the_daemon_exit_1(tmp_path: Path) -> None:
    d = make(tmp_path)
    d.watch("essential", lambda: threading.Thread(target=lambda: None, daemon=True), fatal=True)
    assert d.run() == 1


def test_a_thread_that_finished_on_purpose_is_left_alone(tmp_path: Path) -> None:
    d = make(tmp_path)

    class Done(threading.Thread):
        def run(self) -> None:
            self.finished = True

    ticks: list[int] = []
    d.every(0.01, lambda: ticks.append(1))
    d.watch("file", Done)
    assert d.run(until=lambda: len(ticks) >= 20) == 0
    assert d.counters.get("thread_restarts", "file") == 0


def test_bad_messages_are_counted_and_the_loop_goes_on(tmp_path: Path) -> None:
    d = make(tmp_path)
    pull = d.socket(zmq.PULL, bind="inproc://in")
    seen: list[wire.AnyMessage] = []

    def handle(parts) -> None:
        message = wire.unpack(parts[0].buffer)
        if isinstance(message, wire.Reset):
            raise KeyError("a bug in a handler")
        seen.append(message)

    d.on(pull, handle)
    push = d.ctx.socket(zmq.PUSH)
    push.connect("inproc://in")
    for part in (b"\xc1", wire.pack(wire.Reset()), b"\x80", wire.pack(wire.Bye())):
        push.send(part)
    assert d.run(until=lambda: bool(seen), cleanup=lambda: push.close(linger=0)) == 0
    assert seen == [wire.Bye()]
    assert d.counters.get("malformed", "bad_msgpack") == 1 and d.counters.get("malformed", "bad_kind") == 1
    assert d.counters.get("errors", "KeyError") == 1


def test_sighup_reloads_and_sigterm_stops(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGHUP)
    d = make(tmp_path)
    reloads: list[object] = []
    d.on_reload(reloads.append)
    d.every(0.05, lambda: os.kill(os.getpid(), signal.SIGHUP) if not reloads else None)
    d.every(0.05, lambda: os.kill(os.getpid(), signal.SIGTERM) if reloads else None)
    started = time.monotonic()
    assert d.run(until=lambda: time.monotonic() - started > 60) == 0
    assert reloads == [None] and d.stop.signal == signal.SIGTERM
    assert d.counters.get("reloads", "applied") == 1
    assert signal.getsignal(signal.SIGTERM) is not None and signal.getsignal(signal.SIGHUP) == before


def test_a_reload_asked_that_the_loop_does_not_take_in_time_is_pending_then_applied(tmp_path: Path) -> None:
    """A reload asked over --serve while the loop is busy answers ``pending`` (not refused: it
    still applies), and the loop applies it at its next turn."""
    d = make(tmp_path)
    reloads: list[object] = []
    d.on_reload(reloads.append)
    assert d.ask_reload(timeout=0.01)["outcome"] == "pending"  # no loop runs yet
    assert d.run(until=lambda: bool(reloads)) == 0
    assert reloads == [None] and d.counters.get("reloads", "applied") == 1


def test_a_stop_signal_that_comes_inside_a_wait_still_stops(tmp_path: Path) -> None:
    """CPython runs a handler on the main thread between two bytecodes, which can be inside
    ``Event.wait`` with the event's lock held; a handler that took that lock waited for ever, and
    CI once saw an extractor ignore SIGTERM. Here the handler runs with the lock held by its own
    thread, as it did then."""
    d = make(tmp_path)
    handler = signal.getsignal(signal.SIGTERM)
    returned = threading.Event()

    def inside_a_wait() -> None:
        with d.stop._event._cond:  # what Event.wait holds around its waiting
            handler(signal.SIGTERM, None)
            returned.set()

    threading.Thread(target=inside_a_wait, daemon=True).start()
    assert returned.wait(60), "the SIGTERM handler waited on a lock its own thread holds"
    assert d.run() == 0 and d.stop.signal == signal.SIGTERM


def test_counters_cannot_be_grown_without_bound_by_invented_names() -> None:
    from camwire.common.counters import MAX_KEYS, OTHER, Counters

    c = Counters()
    for i in range(MAX_KEYS + 500):
        c.add("dropped", f"camera-{i}", "hwm")
    dropped = c.snapshot()["dropped"]
    assert len(dropped) == MAX_KEYS + 1 and dropped[OTHER] == {"hwm": 500}
    c.add("dropped", "camera-0", "hwm")  # a known name is still counted as itself
    assert c.get("dropped", "camera-0", "hwm") == 2


def test_serve_until_serves_sockets_before_the_loop_and_in_cleanup(tmp_path: Path) -> None:
    """A bounded phase outside ``run`` on the same Poller: before it (the extractor waiting for
    the recorder) and in its cleanup, after the stop flag is set (a leaving worker finishing)."""
    d = make(tmp_path)
    pull = d.socket(zmq.PULL, bind="inproc://phases")
    seen: list[wire.AnyMessage] = []
    d.on(pull, lambda parts: seen.append(wire.unpack(parts[0].buffer)))
    push = d.ctx.socket(zmq.PUSH)
    push.connect("inproc://phases")
    push.send(wire.pack(wire.Reset()))
    assert d.serve_until(lambda: len(seen) == 1, within_s=60)

    def cleanup() -> None:
        assert d.stop.is_set()
        push.send(wire.pack(wire.Bye()))
        try:
            assert d.serve_until(lambda: len(seen) == 2, within_s=60)
        finally:
            push.close(linger=0)

    d.stop.set()
    assert d.run(cleanup=cleanup) == 0
    assert seen == [wire.Reset(), wire.Bye()]
    assert not d.serve_until(lambda: False, within_s=0)  # a phase that never ends says so


def test_a_daemon_shapes_its_stats_and_adds_a_collector_through_hooks(tmp_path: Path) -> None:
    """No subclass: the --stats file's shape (the extractor's per camera) and a metric of the
    daemon's own (the sink's camwire_camera_up) are given to the skeleton."""
    from prometheus_client import REGISTRY
    from prometheus_client.core import GaugeMetricFamily

    class Up:
        def collect(self):
            family = GaugeMetricFamily("camwire_testd_own_up", "a metric of the daemon's own", labels=["camera"])
            family.add_metric(["door"], 1)
            yield family

    d = Daemon("testd", TestdSettings(stats=str(tmp_path / "stats.json")), {"sent": ("camera",)})
    d.counters.add("sent", "door")
    d.stats_shape(lambda snapshot: {"per_camera": snapshot["sent"]})
    d.collector(Up())
    scraped: list[float | None] = []
    d.every(0.01, lambda: scraped.append(REGISTRY.get_sample_value("camwire_testd_own_up", {"camera": "door"})))
    assert d.run(until=lambda: bool(scraped)) == 0
    assert scraped == [1.0]
    assert REGISTRY.get_sample_value("camwire_testd_sent_total", {"camera": "door"}) == 1
    assert json.loads((tmp_path / "stats.json").read_text()) == {"per_camera": {"door": 1}}
