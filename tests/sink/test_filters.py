"""What a camera tracks, through a real sink: labels, filters per label, stationary objects and a
fixed post (common.rules, sink.tracking), with its live boxes and Home Assistant's entities.

One sink process, a rules file, a real Mosquitto; the test is the worker: it pushes results
over a real socket, each case in a band of the picture of its own, at 5 frames a second.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import zmq

from camwire.common import wire
from camwire.common.rules import Rules, parse_rule
from conftest import EventStream, tcp
from mqtt import Subscriber

W, H = 1280, 720
T0 = 1_795_000_000_000_000_000
STEP = 200_000_000  # 5 frames a second
FRAMES = 45
BAND = 90  # each case walks in a band of its own: y from BAND * band
POST = (1100.0, 10.0, 1130.0, 80.0)  # a person-shaped thing that never moves, top right

RULES = """
[cameras.yard.rules]
labels = ["person", "car"]
stationary_after = 2

[cameras.yard.rules.filters.car]
min_area = 500
max_ratio = 4
"""


def walking(i: int, band: int, label: str, score: float, w: float = 40.0, h: float = 80.0,
            speed: float = 6.0) -> wire.Detection:
    x = 20.0 + speed * i
    return wire.Detection(label, score, (x, BAND * band + 5, x + w, BAND * band + 5 + h))


def parked(i: int) -> wire.Detection:
    """A car that drives in (frames 0-9), stands for 4 s (10-29) and drives off (30 on)."""
    x = 20.0 + 10 * min(i, 9) + 10 * max(0, i - 29)
    return wire.Detection("car", 0.85, (x, BAND * 7 + 5, x + 100, BAND * 7 + 55))


def detections(i: int) -> list[wire.Detection]:
    dets = [walking(i, 0, "person", 0.8),  # tracked: one object
            wire.Detection("person", 0.8, POST),  # never moves, where no person ever moved: a post
            walking(i, 1, "dog", 0.9),  # a label the camera does not track
            walking(i, 2, "person", 0.4),  # each box below min_confidence (0.5)
            walking(i, 3, "person", 0.55 if i % 2 else 0.65),  # boxes pass; the track's median (0.6) is below 0.7
            walking(i, 4, "car", 0.9, w=16, h=12),  # 192 px: below the car's min_area
            walking(i, 5, "car", 0.9, w=200, h=30),  # 6.7 wide for 1 high: above the car's max_ratio
            parked(i)]
    if i == 5:
        dets.append(walking(i, 6, "person", 0.9))  # seen once: fewer than min_frames (2)
    return dets


def result(i: int) -> bytes:
    return wire.pack(wire.Result(camera="yard", seq=i, ts_ns=T0 + i * STEP, width=W, height=H, worker="w1",
                                 detector="test", prev=i - 1, detections=detections(i)))


def test_the_default_rule_is_people_at_0_5_with_a_track_score_of_0_7_seen_twice() -> None:
    rule = parse_rule({}, "rules")
    assert rule.labels == frozenset({"person"}) and rule.stationary_after_s == 10.0
    assert (rule.base.min_confidence, rule.base.threshold, rule.base.min_frames) == (0.5, 0.7, 2)
    assert parse_rule({"labels": ["*"]}, "rules").labels is None
    car = parse_rule({"min_confidence": 0.6, "filters": {"car": {"min_area": 0.01}}}, "rules").filter("car")
    assert (car.min_confidence, car.min_area, car.threshold) == (0.6, 0.01, 0.7)  # the rest from the rule
    assert Rules().for_camera("any").tracks("person") and not Rules().for_camera("any").tracks("cow")
    for bad, where in (({"filters": {"car": {"min_area": -1}}}, "rules.filters.car.min_area"),
                       ({"filters": {"car": {"speed": 1}}}, "rules.filters.car: unknown key"),
                       ({"stationary_after": "soon"}, "rules.stationary_after"),
                       ({"filters": {"car": {"min_ratio": 3, "max_ratio": 2}}}, "min_ratio 3 is above max_ratio 2"),
                       ({"labels": []}, "rules.labels")):
        with pytest.raises(ValueError, match=where):
            parse_rule(bad, "rules")


def test_labels_filters_stationary_and_a_fixed_post_through_a_real_sink(daemons, zctx, broker: int,
                                                                        tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    bind, publish, boxes = tcp(), tcp(), tcp()
    mqtt = Subscriber(broker, "#", raw=True)
    daemons.start("sink", "sink", "--bind", bind, "--events", str(tmp_path / "events.jsonl"), "--publish", publish,
                  "--publish-detections", boxes, "--data-dir", str(tmp_path / "data"), "--rules", str(rules),
                  "--mqtt", f"mqtt://127.0.0.1:{broker}/camwire", "--gone-after", "1s", "--exit-when-drained", "yard")
    events = EventStream(zctx, publish)
    live = zctx.socket(zmq.SUB)
    live.setsockopt(zmq.LINGER, 0)
    live.setsockopt(zmq.SUBSCRIBE, b"")
    live.connect(boxes)
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(bind)
    try:
        # the sink is up and has its broker once it says it is available
        deadline = time.monotonic() + 60
        while not any(t == "camwire/available" and p == b"online" for t, p, _ in mqtt.take(1, timeout=60)):
            assert time.monotonic() < deadline
        for i in range(FRAMES):
            push.send(result(i))
        for i in range(FRAMES, FRAMES + 10):  # an empty picture: everything gone past --gone-after
            push.send(wire.pack(wire.Result(camera="yard", seq=i, ts_ns=T0 + i * STEP, width=W, height=H,
                                            worker="w1", detector="test", prev=i - 1)))
        push.send(wire.pack(wire.Eos(camera="yard", sent=FRAMES + 10, last_seq=FRAMES + 9, results=FRAMES + 10)))
        events.wait_for(lambda e: e["type"] == "object" and e["phase"] == "end" and e["label"] == "car", timeout=60)
        assert daemons.wait("sink", timeout=120) == 0
        shown = []
        while live.poll(0):
            shown.append(wire.unpack(live.recv()))
    finally:
        push.close()
        live.close()
    got = mqtt.take(None)
    mqtt.close()

    log = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    objects = [e for e in log if e["type"] == "object"]
    starts = [e for e in objects if e["phase"] == "start"]
    # two objects: the walker and the parked car; nothing of the dog, the unsure, the small, the wide
    # or the once-seen, and no alert for the post
    assert sorted((e["label"], e["box"][1] // BAND) for e in starts) == [("car", 7), ("person", 0)]
    car = [e for e in objects if e["label"] == "car"]
    told = [(e["phase"], e["stationary"], e["changes"]) for e in car if e["phase"] != "update" or
            set(e["changes"]) - {"score"}]
    assert told == [("start", False, []), ("update", True, ["stationary"]), ("update", False, ["active"]),
                    ("end", False, [])]
    assert not any(e["phase"] == "update" and e["stationary"] and e["changes"] != ["stationary"] for e in car), \
        "no update while it stands"
    masks = [e for e in log if e["type"] == "suggested_mask"]
    assert len(masks) == 1 and masks[0]["label"] == "person" and tuple(masks[0]["box"]) == POST
    stats = daemons.stats("sink")
    assert stats["events"]["suggested_mask"] == 1 and stats["suppressed"]["yard"]["fixed"] == 1  # ended unstarted
    assert stats["suppressed"]["yard"]["threshold"] >= 1  # the unsure walker, ended unstarted

    # live views draw what is tracked and passes the filters: no dog, nothing under 0.5, no small or
    # wide car (the unsure walker's boxes pass one by one: only its track is held back)
    drawn = [(d.label, d.box[1] // BAND) for r in shown for d in r.detections]
    assert shown and {band for _label, band in drawn} <= {0, 3, 6, 7}
    assert {label for label, _band in drawn} <= {"person", "car"}

    # Home Assistant: entities for the labels that made objects, none for the dog
    configs = {t for t, _p, _r in got if t.endswith("/config")}
    assert "homeassistant/sensor/camwire_yard/person_count/config" in configs
    assert "homeassistant/sensor/camwire_yard/car_count/config" in configs
    assert not any("dog" in t for t, _p, _r in got)
    # MQTT tells the car's start, stationary, active and end: not its every update
    car_told = [json.loads(p) for t, p, _r in got if t == "camwire/yard/object"
                and json.loads(p)["label"] == "car"]
    assert [(e["phase"], e["changes"]) for e in car_told] == [("start", []), ("update", ["stationary"]),
                                                             ("update", ["active"]), ("end", [])]

