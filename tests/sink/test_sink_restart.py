"""A sink killed (SIGKILL) and started again on the same data dir repeats no event and no id, on
any output; the recorder's pause events are told once and shown by ``camwire status``. Real
daemons over TCP, a real Mosquitto, an HTTP stand-in for the webhook."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import zmq

from camwire.sample import make_sample_clip
from camwire.common import wire
from conftest import EventStream, free_port, scrape, tcp, value
from mqtt import Subscriber
from test_sink_disk import wait_row
from test_sink_status import camwire_status


class Hook(BaseHTTPRequestHandler):
    """A webhook that takes everything; keeps each event's JSON."""

    got: list[dict] = []

    def do_POST(self) -> None:
        self.got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Hook.got = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minute of small moving shapes: motion on the whole time the test runs."""
    path = tmp_path_factory.mktemp("clips") / "long.mp4"
    make_sample_clip(path, seconds=60, fps=10, width=320, height=180, gop=20, covered=None)
    return path


def sink_argv(results: str, publish: str, tmp: Path, *extra: str) -> list[str]:
    return ["sink", "--bind", results, "--events", str(tmp / "events.jsonl"), "--publish", publish,
            "--data-dir", str(tmp / "data"), *extra]


def wait_metric(port: int, name: str, timeout: float = 60.0, **labels: str) -> float:
    """The counter once it is above 0 (a scrape is the sink's own word that it got there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := value(scrape(port), name, **labels)) > 0:
            return got
        time.sleep(0.2)  # metrics have no change notification to await
    raise AssertionError(f"{name}{labels} stayed 0 for {timeout}s")


def unique(events: list[dict], where: str) -> None:
    ids = Counter(e["id"] for e in events)
    assert not [i for i, n in ids.items() if n > 1], f"{where}: repeated ids {[i for i, n in ids.items() if n > 1]}"
    told = Counter((e["camera"], e["type"], e["ts"]) for e in events if e["type"] != "object")
    assert not [k for k, n in told.items() if n > 1], f"{where}: told twice {[k for k, n in told.items() if n > 1]}"


def test_a_killed_sink_started_again_repeats_no_event(pipeline_factory, daemons, zctx, broker: int, webhook: str,
                                                      long_clip: Path, tmp_path: Path) -> None:
    live = Subscriber(broker, "camwire/door/+")
    outputs = ("--webhook", webhook, "--mqtt", f"mqtt://127.0.0.1:{broker}/camwire", "--mqtt-discovery", "")
    p = pipeline_factory(sink_args=outputs)
    p.worker("worker-1", "covered")
    p.extractor("door", str(long_clip), extra=("--realtime",))
    p.events.wait_type("camera_online")
    start = p.events.wait_type("motion_start")  # motion goes on: the extractor repeats it with every heartbeat
    told = live.until(lambda got: any(t.endswith("/camera_online") for t, _, _ in got))  # on MQTT before the kill

    daemons.procs["sink"].send_signal(signal.SIGKILL)
    daemons.procs["sink"].wait(timeout=10)
    killed = time.time()
    port = free_port()
    daemons.start("sink-2", *sink_argv(p.results, p.events_pub, tmp_path, *outputs, "--metrics-port", str(port)))
    # the new sink has heard the extractor's state again: its status, and the motion repeated (known: stale)
    wait_row(p.data_dir / "status.db", "door", lambda r: (r["last_status_ts"] or 0) > killed)
    assert wait_metric(port, "camwire_sink_motion_messages_total", camera="door", what="stale") >= 1
    assert daemons.stop("sink-2") == 0

    events = p.events_written()
    unique(events, "events file")
    assert [e["id"] for e in events if e["type"] == "motion_start"][0] == start["id"]
    assert [e["type"] for e in events].count("camera_online") == 1  # online all along: said once
    unique(Hook.got, "webhook")
    assert {e["id"] for e in Hook.got} <= {e["id"] for e in events}
    mqtt = [json.loads(body) for topic, body, _ in told + live.take() if not topic.endswith(("/state", "/motion"))]
    live.close()
    unique(mqtt, "mqtt")  # (what paho had not sent yet died with the killed sink)
    assert mqtt and {e["id"] for e in mqtt} <= {e["id"] for e in events}


def pause(camera: str, etype: str = "recording_paused", reason: str = "free space below the floor") -> bytes:
    now = time.time_ns()
    return wire.pack(wire.Event(id=f"{now}-{camera}-{etype}", type=etype, camera=camera, ts=now / 1e9, reason=reason))


def paused_line(status: str) -> str:
    return next(line for line in status.splitlines() if line.startswith("recording paused since"))


def test_recorder_pauses_are_told_once_and_shown_by_status(daemons, zctx, broker: int, webhook: str,
                                                           tmp_path: Path) -> None:
    results, publish, port = tcp(), tcp(), free_port()
    argv = sink_argv(results, publish, tmp_path, "--webhook", webhook, "--mqtt", f"mqtt://127.0.0.1:{broker}/camwire",
                     "--mqtt-discovery", "")
    daemons.start("sink", *argv, "--metrics-port", str(port))
    stream = EventStream(zctx, publish)
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(results)
    # as the recorder sends them (recorder.pause): one per camera recorded; a forged type among them
    forged = wire.Event(id="x-door-camera_online", type="camera_online", camera="door", ts=time.time())
    for message in (pause("door"), wire.pack(forged), pause("yard"), pause("door")):
        push.send(message)
    stream.wait_for(lambda e: e["type"] == "recording_paused" and e["camera"] == "yard")
    assert wait_metric(port, "camwire_sink_malformed_total", reason="unexpected_kind") == 1
    assert paused_line(camwire_status(tmp_path / "data")).endswith(": door, yard")
    assert json.loads(camwire_status(tmp_path / "data", "--json"))["recording_paused"][0]["camera"] == "door"

    daemons.procs["sink"].send_signal(signal.SIGKILL)  # and the recorder, restarted, says it again
    daemons.procs["sink"].wait(timeout=10)
    daemons.start("sink-2", *argv)
    stream = EventStream(zctx, publish)
    push.send(pause("door"))
    push.send(pause("door", "recording_resumed", "free space is back"))
    resumed = stream.wait_type("recording_resumed")
    # the repeat told nothing new; the sink answered the recorder's report with door's record switch,
    # on PUB alone (sink.switches: never set, so "on by default"), which the events file never holds
    assert resumed["camera"] == "door" and [e["type"] for e in stream.seen if e["type"] != "camera_switch"] == [
        "recording_resumed"]
    assert {e["reason"] for e in stream.seen if e["type"] == "camera_switch"} <= {"record=on by default"}
    assert paused_line(camwire_status(tmp_path / "data")).endswith(": yard")
    assert daemons.stop("sink-2") == 0
    push.close()

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e["type"], e["camera"]) for e in events] == [("recording_paused", "door"), ("recording_paused", "yard"),
                                                          ("recording_resumed", "door")]
    assert sorted(e["id"] for e in Hook.got) == sorted(e["id"] for e in events)
    assert daemons.stats("sink-2")["recorder_events"]["recording_paused"] == {"repeated": 1}
    late = Subscriber(broker, "camwire/+/recording")
    retained = {t: body for t, body, retain in late.take() if retain}
    late.close()
    assert retained == {"camwire/door/recording": "recording", "camwire/yard/recording": "paused"}
