"""Events leave the sink over MQTT (a real Mosquitto broker, Debian's) and an HTTP webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mqtt import Subscriber


def test_events_reach_a_real_mosquitto(pipeline_factory, daemons, broker: int, sample_clip: Path) -> None:
    live = Subscriber(broker, "camwire/#")
    p = pipeline_factory(until="gate", sink_args=("--mqtt", f"mqtt://127.0.0.1:{broker}/camwire",
                                                                "--mqtt-discovery", ""))  # test_homeassistant.py
    p.worker("worker-1", "covered")
    p.extractor("gate", str(sample_clip), extra=("--every", "5"))
    assert daemons.wait("sink", timeout=120) == 0
    lines = p.events_file.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert {"camera_online", "motion_start", "camera_covered", "camera_uncovered"} <= {e["type"] for e in events}
    states = {"camera_online": "online", "camera_covered": "covered", "camera_uncovered": "online"}
    motion = {"motion_start": "ON", "motion_end": "OFF"}
    kept = sum(e["type"] in states for e in events) + sum(e["type"] in motion for e in events)
    switches = 3  # the camera's switches (detect, record, snapshots), ON, once it is first named
    expected = 2 + len(events) + kept + switches  # available online/offline, each event, states and motion
    got = live.take(expected)
    live.close()
    by_topic = [(t, body) for t, body, _ in got if t.startswith("camwire/gate/")
                and not t.endswith(("/state", "/motion"))]
    assert by_topic == [(f"camwire/gate/{e['type']}", line) for e, line in zip(events, lines)]  # the same bytes
    assert [body for t, body, _ in got if t == "camwire/gate/state"] == [states[e["type"]] for e in events
                                                                        if e["type"] in states]
    assert [body for t, body, _ in got if t == "camwire/gate/motion"] == [motion[e["type"]] for e in events
                                                                         if e["type"] in motion]
    assert [body for t, body, _ in got if t == "camwire/available"] == ["online", "offline"]
    assert [(t, body) for t, body, _ in got if t.endswith(("/detect/state", "/record/state", "/snapshots/state"))] \
        == [(f"camwire/gate/{s}/state", "ON") for s in ("detect", "record", "snapshots")]
    assert daemons.stats("sink")["outputs"]["mqtt"]["published"] == len(events) + kept + switches

    # a client that comes later (Home Assistant after a restart) is told the state by the broker
    late = Subscriber(broker, "camwire/#")
    retained = {t: body for t, body, retain in late.take() if retain}
    late.close()
    assert retained == {"camwire/gate/state": "online", "camwire/gate/motion": "OFF", "camwire/available": "offline",
                        **{f"camwire/gate/{s}/state": "ON" for s in ("detect", "record", "snapshots")}}


class FlakyHook(BaseHTTPRequestHandler):
    """Answers 503 to the first ``fail`` requests, then 200; keeps what it accepted."""

    fail = 2
    seen = 0
    accepted: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen += 1
        ok = type(self).seen > self.fail
        if ok:
            self.accepted.append(body)
        self.send_response(200 if ok else 503)
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


def test_webhook_retries_until_delivered(pipeline_factory, daemons, sample_clip: Path) -> None:
    FlakyHook.seen, FlakyHook.accepted = 0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        p = pipeline_factory(until="door", sink_args=("--webhook", url))
        p.worker("worker-1", "covered")
        p.extractor("door", str(sample_clip), extra=("--every", "5"))
        assert daemons.wait("sink", timeout=120) == 0
    finally:
        server.shutdown()
    events = p.events_written()
    assert events and FlakyHook.accepted == events  # every event, once, in order
    assert daemons.stats("sink")["outputs"]["webhook"] == {"delivered": len(events), "retried": 2}
