"""Quiet MQTT (issue 24): an object's start, end and news only, the retained snapshot only when it
is worth showing, and each camera's connectivity for Home Assistant; through a real Mosquitto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from camwire.common import wire
from camwire.common.counters import Counters
from camwire.sink.outputs.homeassistant import Discovery
from camwire.sink.outputs.mqtt import MqttOutput, worth_showing, worth_telling
from mqtt import Subscriber

DAY = "snapshots/porch/2026-01-01"
CONNECTIVITY_CONFIG = "ha/binary_sensor/site_porch/connectivity/config"
SNAPSHOT_CONFIG = "ha/image/site_porch/snapshot/config"


def event(name: str, type: str = "object", phase: str | None = None, changes: tuple[str, ...] = (),
          written: bool = False, snapshot: str | None = None, **fields) -> wire.Event:
    """An event of camera ``porch``; ``written``: its snapshot was written with it (named after it)."""
    if written:
        snapshot = f"{DAY}/{name}.jpg"
    obj = {"object_id": "o1", "label": "person"} if type == "object" else {}
    return wire.Event(id=name, type=type, camera="porch", ts=1.0, phase=phase, changes=list(changes),
                      snapshot=snapshot, **{**obj, **fields})


def test_an_update_is_told_when_it_changes_more_than_its_score() -> None:
    assert worth_telling(event("s", phase="start")) and worth_telling(event("e", phase="end"))
    assert not worth_telling(event("u1", phase="update", changes=("score",)))
    assert not worth_telling(event("u2", phase="update"))  # nothing named: nothing to tell
    for news in ("label", "zones", "stationary", "active", "snapshot"):
        assert worth_telling(event("u3", phase="update", changes=("score", news)))
    for other in ("camera_online", "camera_covered", "motion_start", "recording_paused", "suggested_mask"):
        assert worth_telling(event("x", type=other))
    # the snapshot topic: an object's first, then a clearly better one, each the file written with it
    assert worth_showing(event("s", phase="start", written=True))
    assert not worth_showing(event("s", phase="start"))  # none written
    assert not worth_showing(event("u4", phase="update", changes=("score",), written=True))
    assert worth_showing(event("u5", phase="update", changes=("snapshot",), written=True))
    assert not worth_showing(event("u6", phase="update", changes=("snapshot",), snapshot=f"{DAY}/s.jpg"))
    assert not worth_showing(event("c", type="camera_covered", written=True))


def test_label_entities_come_only_from_tracked_objects() -> None:
    ha = Discovery("ha", "site")
    camera = ha.on_event(event("m", type="suggested_mask", label="person", box=(1.0, 2.0, 3.0, 4.0)))
    assert [t for t, _ in camera] == ["ha/binary_sensor/site_porch/connectivity/config",
                                      "ha/binary_sensor/site_porch/motion/config", "ha/image/site_porch/snapshot/config",
                                      *[f"ha/switch/site_porch/{s}/config" for s in wire.SWITCHES]]
    assert ha.on_event(event("d", type="detection", label="person")) == []
    assert [t for t, _ in ha.everything() if "person" in t] == []
    assert "site/porch/person/count" in dict(ha.on_event(event("s", phase="start")))


def last_is(topic: str, payload: bytes):
    return lambda got: bool(got) and got[-1][:2] == (topic, payload)


def all_of(topics: set[str]):
    return lambda got: topics <= {t for t, _, _ in got}


def test_an_object_goes_out_at_its_start_its_end_and_its_news(broker: int, tmp_path: Path) -> None:
    scores = [event(f"u{i}", phase="update", changes=("score",), written=True) for i in range(40)]
    news = {"zones": event("z", phase="update", changes=("score", "zones"), zones=["path"],
                           snapshot=f"{DAY}/u9.jpg"),
            "snapshot": event("b", phase="update", changes=("score", "snapshot"), written=True),
            "stationary": event("still", phase="update", changes=("stationary",), stationary=True,
                                snapshot=f"{DAY}/b.jpg"),
            "active": event("moves", phase="update", changes=("active",), snapshot=f"{DAY}/b.jpg")}
    start, end = event("s", phase="start", written=True), event("e", phase="end", snapshot=f"{DAY}/b.jpg")
    sequence = [event("on", type="camera_online"), start, *scores[:10], news["zones"], *scores[10:20],
                news["snapshot"], *scores[20:30], news["stationary"], event("q", phase="update"),
                news["active"], *scores[30:], end,
                event("m", type="suggested_mask", label="person", box=(1.0, 2.0, 3.0, 4.0)),
                event("cov", type="camera_covered"), event("off", type="camera_offline")]
    for e in sequence:  # each snapshot an event names, with bytes of its own
        if e.snapshot is not None and not (tmp_path / e.snapshot).exists():
            (tmp_path / e.snapshot).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / e.snapshot).write_bytes(f"jpeg of {e.id}".encode())

    counters = Counters()
    live = Subscriber(broker, "#", raw=True)
    out = MqttOutput(f"mqtt://127.0.0.1:{broker}/site", counters, structlog.get_logger(), discovery="ha",
                     cameras=["porch"], data_dir=tmp_path)
    try:
        # told everything at the connect: the configs go out holding the lock that every send()
        # takes, so what is sent from here on finds the output ready
        got = live.until(all_of({SNAPSHOT_CONFIG}))
        for e in sequence:
            out.send(e, json.dumps({"id": e.id, "phase": e.phase, "changes": e.changes}).encode())
        got += live.until(last_is("site/porch/state", b"offline"))
    finally:
        out.close()
    live.close()

    def on(topic: str) -> list[bytes]:
        return [payload for t, payload, _ in got if t == topic]

    # the object: its start, the four updates with news and its end; 41 quiet updates held back
    told = [json.loads(p) for p in on("site/porch/object")]
    assert [m["id"] for m in told] == ["s", "z", "b", "still", "moves", "e"]
    assert counters.get("outputs", "mqtt", "quiet") == 41
    # the picture: the first, then the clearly better one; forty written for a score alone are not
    assert on("site/porch/snapshot") == [b"jpeg of s", b"jpeg of b"]
    assert counters.get("outputs", "mqtt", "snapshot_quiet") == 40
    # Home Assistant's count moved twice; the other events went out as they came
    assert on("site/porch/person/count") == [b"1", b"0"]
    assert [json.loads(p)["id"] for p in on("site/porch/suggested_mask")] == ["m"]
    assert on("site/porch/state") == [b"online", b"covered", b"offline"]
    assert {t for t, _, _ in got if t.endswith("/config")} == {
        CONNECTIVITY_CONFIG, "ha/binary_sensor/site_porch/motion/config", SNAPSHOT_CONFIG,
        "ha/binary_sensor/site_porch/person_occupancy/config", "ha/sensor/site_porch/person_count/config",
        *[f"ha/switch/site_porch/{s}/config" for s in wire.SWITCHES]}

    # a Home Assistant that comes later finds the better picture and the camera's connectivity
    late = Subscriber(broker, "#", raw=True)
    retained = {t: p for t, p, retain in late.until(all_of({"site/porch/snapshot", CONNECTIVITY_CONFIG}))
                if retain}
    late.close()
    assert retained["site/porch/snapshot"] == b"jpeg of b"
    config = json.loads(retained[CONNECTIVITY_CONFIG])
    assert (config["device_class"], config["state_topic"], config["availability_topic"]) == (
        "connectivity", "site/porch/state", "site/available")
    assert config["device"]["identifiers"] == ["site_porch"]


def test_connectivity_reads_covered_as_connected() -> None:
    jinja2 = pytest.importorskip("jinja2")  # Home Assistant renders value_template with Jinja
    config = json.loads(dict(Discovery("ha", "site").camera("porch"))[CONNECTIVITY_CONFIG])
    template = jinja2.Environment().from_string(config["value_template"])
    read = {state: template.render(value=state) for state in ("online", "covered", "offline", "failed")}
    assert read == {"online": config["payload_on"], "covered": config["payload_on"],
                    "offline": config["payload_off"], "failed": config["payload_off"]}
