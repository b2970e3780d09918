"""A camera's switches (sink.switches) through a real sink: detection off makes no objects for that
camera while another's still do, and on again makes them again; snapshots off writes no picture;
a repeat changes nothing; the switches outlive a restart (status.db shows them, the sink acts on
them); MQTT's ``<prefix>/<camera>/<switch>/set`` does what the console's message does, its state
retained for Home Assistant, and a bad command is counted and ignored.

The test is the worker and the console: it pushes results (with their pixels) and ``wire.Switch``
over the sink's own PULL, and awaits the events on its PUB; a real Mosquitto for MQTT.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import zmq

from camwire.common import wire
from camwire.common.pixels import pack_pixels
from camwire.sink.ledger import Ledger
from camwire.sink.switches import Switches
from conftest import SHAPES_RULES, EventStream, tcp, wait_status
from mqtt import Subscriber
from test_sink_status import camwire_status

W, H = 320, 240
STEP = 200_000_000  # 5 frames a second of capture time
BANDS = {"box": 0, "disc": 1, "cone": 2, "star": 0}  # each label walks a band of its own: a new object each


def switch(camera: str, name: str, on: bool, by: str = "console 127.0.0.1") -> bytes:
    return wire.pack(wire.Switch(camera=camera, switch=name, on=on, by=by))


class Worker:
    """Results for cameras, each with one object walking right and the frame's pixels."""

    def __init__(self, push: zmq.Socket) -> None:
        self.push = push
        self.seq: dict[str, int] = {}
        self.t0 = time.time_ns()

    def frames(self, n: int, cameras: tuple[str, ...], label: str) -> None:
        for _ in range(n):
            for camera in cameras:
                i = self.seq.get(camera, 0)
                self.seq[camera] = i + 1
                image = np.full((H, W, 3), 90, np.uint8)
                x, y = 10 + 6 * (i % 40), 10 + 80 * BANDS[label]
                image[y:y + 60, x:x + 40] = (40, 200, 220)
                pixels, shape = pack_pixels(image)
                r = wire.Result(camera=camera, seq=i, ts_ns=self.t0 + i * STEP, width=W, height=H, worker="w1",
                                detector="test", prev=i - 1, image=shape,
                                detections=[wire.Detection(label, 0.9, (float(x), float(y), x + 40.0, y + 60.0))])
                self.push.send_multipart([wire.pack(r), pixels])


def start_sink(daemons, bind: str, publish: str, tmp: Path, *extra: str) -> None:
    daemons.start("sink", "sink", "--bind", bind, "--publish", publish, "--events", str(tmp / "events.jsonl"),
                  "--data-dir", str(tmp / "data"), "--rules", str(SHAPES_RULES), "--gone-after", "1s", *extra)


def objects(events: list[dict], camera: str, since: int = 0) -> list[dict]:
    return [e for e in events[since:] if e["type"] == "object" and e["camera"] == camera]


def snapshot_files(data: Path, camera: str) -> set[Path]:
    return set((data / "snapshots" / camera).rglob("*.jpg"))


def test_detection_and_snapshots_off_and_on_outlive_a_restart(daemons, zctx, tmp_path: Path) -> None:
    bind, publish, data = tcp(), tcp(), tmp_path / "data"
    start_sink(daemons, bind, publish, tmp_path)
    events = EventStream(zctx, publish)
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(bind)
    worker = Worker(push)

    worker.frames(6, ("a", "b"), "box")
    for camera in ("a", "b"):
        events.wait_for(lambda e, c=camera: e["type"] == "object" and e["camera"] == c and e["phase"] == "start")

    # detection off for a: its object ends at once, then the switch is told; its results make
    # nothing more, b's still do
    push.send(switch("a", "detect", False))
    told = events.wait_type("camera_switch")
    assert (told["camera"], told["reason"]) == ("a", "detect=off by console 127.0.0.1")
    assert told["id"].endswith("-a-camera_switch")
    assert objects(events.seen, "a")[-1]["phase"] == "end"
    push.send(switch("a", "detect", False))  # set so already: nothing changes, nothing is told
    mark = len(events.seen)
    worker.frames(6, ("a", "b"), "disc")
    events.wait_for(lambda e: e["type"] == "object" and e["camera"] == "b" and e["label"] == "disc", since=mark)
    assert objects(events.seen, "a", mark) == []
    # its results still count: its status goes on
    wait_status(data / "status.db", "a", lambda r: r["results"] >= 12 and r["switches"] == {
        "detect": False, "record": True, "snapshots": True})

    # on again: a's objects come back; snapshots off for b: its events name no picture, none is written
    push.send(switch("a", "detect", True, by="mqtt"))
    push.send(switch("b", "snapshots", False))
    before = snapshot_files(data, "b")
    mark = len(events.seen)
    events.wait_for(lambda e: e["type"] == "camera_switch" and e["camera"] == "b", since=mark)
    worker.frames(8, ("a", "b"), "cone")
    events.wait_for(lambda e: e["type"] == "object" and e["camera"] == "a" and e["label"] == "cone", since=mark)
    cones = events.wait_for(lambda e: e["type"] == "object" and e["camera"] == "b" and e["label"] == "cone",
                            since=mark)
    assert cones["snapshot"] is None and snapshot_files(data, "b") == before
    push.send(switch("a", "detect", False))  # off again, to be kept over the restart
    events.wait_for(lambda e: e["type"] == "camera_switch" and e["reason"].startswith("detect=off"), since=mark)
    assert [e["reason"] for e in events.seen if e["type"] == "camera_switch"] == [
        "detect=off by console 127.0.0.1", "detect=on by mqtt", "snapshots=off by console 127.0.0.1",
        "detect=off by console 127.0.0.1"]
    push.close()
    assert daemons.stop("sink") == 0
    stats = daemons.stats("sink")
    assert stats["switches"] == {"detect": {"changed": 3, "unchanged": 1}, "snapshots": {"changed": 1}}
    assert stats["switched_off"] == {"a": ["detect"], "b": ["snapshots"]}
    log = [json.loads(line) for line in (tmp_path / "sink.log").read_text().splitlines() if line.startswith("{")]
    set_lines = [(r["camera"], r["switch"], r["on"], r["by"]) for r in log if r.get("event") == "camera switch set"]
    assert set_lines == [("a", "detect", False, "console 127.0.0.1"), ("a", "detect", True, "mqtt"),
                         ("b", "snapshots", False, "console 127.0.0.1"), ("a", "detect", False, "console 127.0.0.1")]
    ledger = Ledger(data / "ledger.db")  # where they are kept
    assert Switches(ledger, lambda *_: "id").off() == {"a": ["detect"], "b": ["snapshots"]}
    ledger.close()

    # a restarted sink keeps them: a's results make no objects, b's objects no pictures, and
    # status.db says so from its first rows
    restarted = time.time()
    start_sink(daemons, bind, publish, tmp_path)
    events = EventStream(zctx, publish)
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(bind)
    worker.push = push
    worker.frames(8, ("a", "b"), "star")
    star = events.wait_for(lambda e: e["type"] == "object" and e["camera"] == "b" and e["label"] == "star")
    assert star["snapshot"] is None and snapshot_files(data, "b") == before
    assert objects(events.seen, "a") == [] and [e for e in events.seen if e["type"] == "camera_switch"] == []
    for camera, off in (("a", "detect"), ("b", "snapshots")):
        wait_status(data / "status.db", camera, lambda r, o=off: r["updated_ts"] > restarted and r["switches"] == {
            s: s != o for s in wire.SWITCHES})
    push.close()
    shown = {line.split()[0]: line for line in camwire_status(data).splitlines()[2:] if line.strip()}
    assert "switched off: detect" in shown["a"] and "switched off: snapshots" in shown["b"]
    cameras = {c["camera"]: c for c in json.loads(camwire_status(data, "--json"))["cameras"]}
    assert cameras["a"]["switches"] == {"detect": False, "record": True, "snapshots": True}


def publish(port: int, topic: str, payload: str, retain: bool = False) -> None:
    """One message, as Home Assistant's MQTT switch sends it (QoS 1, waited for)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=30)
    finally:
        client.loop_stop()
        client.disconnect()


def test_mqtt_sets_a_switch_states_it_retained_and_counts_bad_commands(daemons, zctx, broker: int,
                                                                     tmp_path: Path) -> None:
    bind, pub = tcp(), tcp()
    config = tmp_path / "camwire.toml"
    config.write_text('[cameras.porch]\nurl = "rtsp://127.0.0.1:1/porch"\n')
    live = Subscriber(broker, "#")
    # a command left retained with the broker (not what Home Assistant does) is not one: the broker
    # would hand it to the sink again at every connect, undoing what was set since
    publish(broker, "camwire/porch/record/set", "OFF", retain=True)
    start_sink(daemons, bind, pub, tmp_path, "--mqtt", f"mqtt://127.0.0.1:{broker}/camwire", "--config",
               str(config))
    events = EventStream(zctx, pub)
    # known from the file: its switches' states and Home Assistant's switch entities, at the connect
    got = live.until(lambda g: {f"camwire/porch/{s}/state" for s in wire.SWITCHES} <= {t for t, _, _ in g})
    assert {t: p for t, p, _ in got if t.endswith("/detect/state")} == {"camwire/porch/detect/state": "ON"}
    configs = {t: json.loads(p) for t, p, _ in got if t.startswith("homeassistant/switch/")}
    detect = configs["homeassistant/switch/camwire_porch/detect/config"]
    assert (detect["command_topic"], detect["state_topic"], detect["payload_on"], detect["payload_off"]) == (
        "camwire/porch/detect/set", "camwire/porch/detect/state", "ON", "OFF")
    assert set(configs) == {f"homeassistant/switch/camwire_porch/{s}/config" for s in wire.SWITCHES}

    # bad commands first, in order: each is counted and ignored, and the good one after them works
    publish(broker, "camwire/porch/detect/set", "MAYBE")
    publish(broker, "camwire/porch/zoom/set", "ON")
    publish(broker, "camwire/nobody/detect/set", "OFF")  # a camera the sink does not know
    publish(broker, "camwire/porch/detect/set", "OFF")
    told = events.wait_type("camera_switch")
    assert (told["camera"], told["reason"]) == ("porch", "detect=off by mqtt")
    live.until(lambda g: ("camwire/porch/detect/state", "OFF", False) in g)
    late = Subscriber(broker, "camwire/porch/+/state")  # as Home Assistant finds it after its own restart
    retained = {t: p for t, p, r in late.until(lambda g: len(g) == 3) if r}
    late.close()
    assert retained == {"camwire/porch/detect/state": "OFF", "camwire/porch/record/state": "ON",
                        "camwire/porch/snapshots/state": "ON"}
    assert daemons.stop("sink") == 0
    live.close()
    stats = daemons.stats("sink")
    assert stats["outputs"]["mqtt"]["bad_command"] == 2 and stats["outputs"]["mqtt"]["retained_command"] == 1
    assert stats["outputs"]["mqtt"]["command"] == 2  # porch's, and nobody's: refused by the sink, as the console's
    assert stats["malformed"] == {"unknown_camera": 1}
    assert stats["switched_off"] == {"porch": ["detect"]} and [e["type"] for e in events.seen] == ["camera_switch"]
