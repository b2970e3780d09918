"""Home Assistant's MQTT discovery (sink.outputs.homeassistant), through a real sink and a real Mosquitto."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import structlog
import zmq

from camwire.common.settings.values import discovery_prefix
from camwire.sink.outputs.homeassistant import Discovery
from camwire.sink.outputs.mqtt import MqttOutput
from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.pixels import decode_jpeg, pack_pixels
from conftest import EventStream, free_port, tcp
from mqtt import Subscriber, run_broker

W, H = 320, 240
T0 = 1_795_000_000_000_000_000  # capture time of the first frame, ns
STEP = 200_000_000  # 5 frames a second


def obj(phase: str, label: str, object_id: str = "o1", camera: str = "yard") -> wire.Event:
    return wire.Event(id=f"{object_id}-{phase}-{label}", type="object", camera=camera, ts=1.0, phase=phase,
                      object_id=object_id, label=label)


def states(messages) -> dict[str, str]:
    return {topic: payload for topic, payload in messages if not topic.endswith("/config")}


def test_counts_follow_objects_and_configs_come_once_per_camera_and_label() -> None:
    ha = Discovery("homeassistant", "camwire")
    first = ha.on_event(obj("start", "person"))
    topics = [t for t, _ in first]
    assert topics == ["homeassistant/binary_sensor/camwire_yard/connectivity/config",
                      "homeassistant/binary_sensor/camwire_yard/motion/config",
                      "homeassistant/image/camwire_yard/snapshot/config",
                      *[f"homeassistant/switch/camwire_yard/{s}/config" for s in wire.SWITCHES],
                      "homeassistant/binary_sensor/camwire_yard/person_occupancy/config",
                      "homeassistant/sensor/camwire_yard/person_count/config",
                      "camwire/yard/person/count", "camwire/yard/person/occupied"]
    assert states(first) == {"camwire/yard/person/count": "1", "camwire/yard/person/occupied": "ON"}
    assert ha.on_event(obj("update", "person")) == []  # nothing changed
    assert states(ha.on_event(obj("start", "person", "o2"))) == {"camwire/yard/person/count": "2",
                                                                  "camwire/yard/person/occupied": "ON"}
    # o2 turns out to be a dog: it moves from one count to the other
    moved = ha.on_event(obj("update", "dog", "o2"))
    assert [t for t, _ in moved][:2] == ["homeassistant/binary_sensor/camwire_yard/dog_occupancy/config",
                                         "homeassistant/sensor/camwire_yard/dog_count/config"]
    assert states(moved) == {"camwire/yard/person/count": "1", "camwire/yard/person/occupied": "ON",
                             "camwire/yard/dog/count": "1", "camwire/yard/dog/occupied": "ON"}
    assert states(ha.on_event(obj("end", "dog", "o2"))) == {"camwire/yard/dog/count": "0",
                                                             "camwire/yard/dog/occupied": "OFF"}
    assert ha.on_event(obj("end", "cat", "never-started")) == []
    # a label that is no topic level, and everything again for a broker that lost it all
    assert "camwire/yard/traffic_light/count" in states(ha.on_event(obj("start", "traffic light", "o3")))
    again = dict(ha.everything())
    assert again["camwire/yard/person/count"] == "1" and again["camwire/yard/dog/occupied"] == "OFF"
    assert len([t for t in again if t.endswith("/config")]) == 6 + 2 * 3
    assert discovery_prefix("") == "" and discovery_prefix("ha/") == "ha"
    for bad in ("#", "a/+/b", "/", "a//b"):
        with pytest.raises(argparse.ArgumentTypeError):
            discovery_prefix(bad)


def last_is(topic: str, payload=None):
    return lambda got: bool(got) and got[-1][0] == topic and payload in (None, got[-1][1])


def all_of(topics: set[str]):
    return lambda got: topics <= {t for t, _, _ in got}


def frame(i: int) -> tuple[bytes, tuple[int, int, int]]:
    """The frame's pixels as a worker's result carries them (an LZ4 block, and their size)."""
    image = np.full((H, W, 3), 90, np.uint8)
    image[60 + i:180 + i, 100 + 4 * i:150 + 4 * i] = (40, 40, 220)  # the person, walking right
    return pack_pixels(image)


def result(i: int, person: bool) -> list[bytes]:
    dets = [wire.Detection("person", 0.8, (100.0 + 4 * i, 60.0 + i, 150.0 + 4 * i, 180.0 + i))] if person else []
    pixels, image = frame(i) if person else (None, None)
    r = wire.Result(camera="yard", seq=i, ts_ns=T0 + i * STEP, width=W, height=H, worker="w1", detector="test",
                    detections=dets, image=image)
    return [wire.pack(r), pixels] if person else [wire.pack(r)]


def test_home_assistant_discovers_motion_occupancy_count_and_snapshot(daemons, zctx, broker: int,
                                                                      tmp_path: Path) -> None:
    live = Subscriber(broker, "#", raw=True)
    bind, publish, data = tcp(), tcp(), tmp_path / "data"
    daemons.start("sink", "sink", "--bind", bind, "--events", str(tmp_path / "events.jsonl"), "--publish", publish,
                  "--data-dir", str(data), "--mqtt", f"mqtt://127.0.0.1:{broker}/camwire", "--gone-after", "1s",
                  "--exit-when-drained", "yard")
    pub = EventStream(zctx, publish)
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(bind)

    motion_config = "homeassistant/binary_sensor/camwire_yard/motion/config"
    push.send(wire.pack(wire.Motion(camera="yard", active=True, ts_ns=T0, seq=0)))
    got = live.until(last_is(motion_config))  # the sink is connected and knows the camera
    for i in range(10):  # a person in ten frames, then ten empty ones: gone past --gone-after, it ends
        push.send_multipart(result(i, person=True))
    for i in range(10, 20):
        push.send_multipart(result(i, person=False))
    push.send(wire.pack(wire.Motion(camera="yard", active=False, ts_ns=T0 + 20 * STEP, started_ns=T0)))
    push.send(wire.pack(wire.Eos(camera="yard", sent=20, last_seq=19, results=20)))
    assert pub.wait_for(lambda e: e["type"] == "object" and e["phase"] == "end")["snapshot"].startswith("snapshots/")
    assert daemons.wait("sink", timeout=120) == 0
    push.close()
    got += live.until(last_is("camwire/available", b"offline"))
    live.close()

    # what the sink said, in order: the label's configs, then one person present, then none
    topics = [t for t, _, _ in got]
    count, occupied = "camwire/yard/person/count", "camwire/yard/person/occupied"
    assert [p for t, p, _ in got if t == count] == [b"1", b"0"]
    assert [p for t, p, _ in got if t == occupied] == [b"ON", b"OFF"]
    assert topics.index("homeassistant/sensor/camwire_yard/person_count/config") < topics.index(count)
    assert [p for t, p, _ in got if t == "camwire/yard/motion"] == [b"ON", b"OFF"]

    # every event names its snapshot relative to the data dir: the file, the PUB socket and MQTT
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    objects = [e for e in events if e["type"] == "object"]
    assert [e["phase"] for e in objects][0] == "start" and objects[-1]["phase"] == "end"
    snapshot = objects[0]["snapshot"]
    assert snapshot.startswith("snapshots/yard/") and (data / snapshot).is_file()
    assert all(e["snapshot"] == snapshot for e in objects)  # the only one kept: the first frame scored best
    # MQTT tells an object's start, end and the updates with news (not a higher score alone: issue 24)
    told = [e for e in objects if e["phase"] != "update" or set(e.get("changes", [])) - {"score"}]
    assert [json.loads(p) for t, p, _ in got if t == "camwire/yard/object"] == told
    assert [e["snapshot"] for e in pub.seen if e["type"] == "object"] == [snapshot] * len(objects)
    assert json.loads((data / snapshot).with_suffix(".json").read_text())["snapshot"] == snapshot

    # a Home Assistant that comes later finds every config, state and the latest picture, retained
    wanted = {motion_config, "homeassistant/image/camwire_yard/snapshot/config",
              "homeassistant/binary_sensor/camwire_yard/connectivity/config",
              "homeassistant/binary_sensor/camwire_yard/person_occupancy/config",
              "homeassistant/sensor/camwire_yard/person_count/config",
              *[f"homeassistant/switch/camwire_yard/{s}/config" for s in wire.SWITCHES]}
    late = Subscriber(broker, "#", raw=True)
    told = late.until(all_of(wanted | {count, occupied, "camwire/yard/motion", "camwire/yard/snapshot"}))
    late.close()
    assert all(retain for _, _, retain in told)
    retained = {t: p for t, p, _ in told}
    configs = {t: json.loads(p) for t, p in retained.items() if t.endswith("/config")}
    assert set(configs) == wanted
    for config in configs.values():
        assert (config["availability_topic"], config["payload_available"], config["payload_not_available"]) == (
            "camwire/available", "online", "offline")
        assert config["device"] == {"identifiers": ["camwire_yard"], "name": "yard", "manufacturer": "camwire",
                                    "model": "camera"}
    assert len({c["unique_id"] for c in configs.values()}) == 8
    motion = configs[motion_config]
    assert (motion["device_class"], motion["state_topic"], motion["payload_on"], motion["payload_off"]) == (
        "motion", "camwire/yard/motion", "ON", "OFF")
    occupancy = configs["homeassistant/binary_sensor/camwire_yard/person_occupancy/config"]
    assert (occupancy["device_class"], occupancy["state_topic"]) == ("occupancy", occupied)
    assert configs["homeassistant/sensor/camwire_yard/person_count/config"]["state_topic"] == count
    connectivity = configs["homeassistant/binary_sensor/camwire_yard/connectivity/config"]
    assert (connectivity["device_class"], connectivity["state_topic"]) == ("connectivity", "camwire/yard/state")
    image = configs["homeassistant/image/camwire_yard/snapshot/config"]
    assert (image["image_topic"], image["content_type"]) == ("camwire/yard/snapshot", "image/jpeg")
    assert retained[count] == b"0" and retained[occupied] == b"OFF" and retained["camwire/yard/motion"] == b"OFF"
    picture = retained["camwire/yard/snapshot"]
    assert picture == (data / snapshot).read_bytes()  # the snapshot as kept: the box drawn
    assert decode_jpeg(picture, size=(W, H)).shape == (H, W, 3)


def test_a_broker_that_lost_everything_is_told_it_again_after_the_reconnect() -> None:
    port = free_port()
    first = run_broker(port)
    next(first)
    out = MqttOutput(f"mqtt://127.0.0.1:{port}/site", Counters(), structlog.get_logger(), discovery="ha",
                     cameras=["porch"])  # --config's camera: known before any event names it
    second = None
    try:
        sub = Subscriber(port, "#")
        sub.until(all_of({"ha/binary_sensor/site_porch/motion/config", "ha/image/site_porch/snapshot/config"}))
        out.send(obj("start", "cat", camera="porch"), b"{}")
        sub.until(last_is("site/porch/cat/occupied", "ON"))
        sub.close()

        next(first, None)  # that broker stops, and its retained messages go with it
        second = run_broker(port)
        next(second)
        again = Subscriber(port, "#")  # paho reconnects on its own, and the sink says it all again
        wanted = {"ha/binary_sensor/site_porch/motion/config", "ha/image/site_porch/snapshot/config",
                  "ha/binary_sensor/site_porch/connectivity/config",
                  "ha/binary_sensor/site_porch/cat_occupancy/config", "ha/sensor/site_porch/cat_count/config"}
        seen = {t: p for t, p, _ in again.until(all_of(wanted | {"site/porch/cat/count", "site/porch/cat/occupied"}))}
        assert wanted <= set(seen) and seen["site/porch/cat/count"] == "1" and seen["site/porch/cat/occupied"] == "ON"
        again.close()
    finally:
        out.close()
        next(second or first, None)
