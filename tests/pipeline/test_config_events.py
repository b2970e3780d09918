"""Events that mean something, run as users run them: every daemon started as its systemd unit
starts it (``python -m camwire DAEMON --config camwire.toml``, a process each, real TCP sockets)
from one camwire.toml this test writes, with a real Mosquitto for Home Assistant.

The file's camera ``yard`` is the sample clip (camwire.sample: a yellow ``box`` drives across at
y = 180..220, a blue ``disc`` rolls at y = 270 +- 25, both crossing more than once), with
``detect = "always"``, ``detector = ["objects", "covered"]``, a zone ``road`` (the bottom 30% of
the frame: the disc's bottom-centre stands in it, the box's never does), a mask over the right
quarter from the box's height down (both shapes enter it: what stands there is dropped) and a
rule ``zones = ["road"]``. So, exactly: only discs become events, each a start ... an end with
zones ["road"], none with its box standing in the mask; the box is tracked and held back.

Three workers: tests/pipeline/shapes_worker.py serving ``objects``, a ``covered`` worker, and a
worker serving a detector no camera wants, which gets no frame. And a typo in the same file:
``check-config`` refuses it with FILE:LINE, and a running sink given SIGHUP keeps its config.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from camwire.common import wire
from camwire.sample import make_sample_clip
from camwire.sink.store.status_db import read_status
from conftest import ROOT, tcp, wait_log
from mqtt import Subscriber

HERE = Path(__file__).resolve().parent
W, H = 640, 360
MASK = (0.75, 0.5, 1.0, 1.0)  # x1, y1, x2, y2 as fractions: the right quarter, from the box's height down
ROAD_TOP = 0.7  # the zone "road": y from 0.7 of the height to the bottom
RULE = 'zones = ["road"]'
TYPO = 'zones = ["raod"]'  # the same length: a rule naming a zone the camera lacks


def write_config(tmp: Path, clip: Path, broker: int) -> Path:
    x1, y1, x2, y2 = MASK
    config = tmp / "camwire.toml"
    config.write_text(f"""\
[sockets]
frontend = "{tcp()}"
backend = "{tcp()}"
results = "{tcp()}"
events = "{tcp()}"

[sink]
events = "{tmp / 'events.jsonl'}"
data_dir = "{tmp / 'data'}"
mqtt = "mqtt://127.0.0.1:{broker}/camwire"
gone_after = "1s"

[cameras.yard]
url = "{clip}"
fps = 10
realtime = false
record = false
detect = "always"
detector = ["objects", "covered"]
masks = [[[{x1}, {y1}], [{x2}, {y1}], [{x2}, {y2}], [{x1}, {y2}]]]
zones = {{road = [[0.0, {ROAD_TOP}], [1.0, {ROAD_TOP}], [1.0, 1.0], [0.0, 1.0]]}}

[cameras.yard.rules]
# shapes, not people; started at their first frame out of the mask (no sightings or move to wait for)
labels = ["*"]
min_frames = 1
stationary_after = 0
{RULE}
""")
    return config


def start_shapes_worker(daemons, name: str, *argv: str) -> subprocess.Popen:
    """``shapes_worker.py classifier ...``: camwire's own entry point with the test's ``shapes``
    detector, logged and stopped like the daemons conftest.Daemons starts."""
    log = open(daemons.tmp / f"{name}.log", "wb")
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(HERE / "shapes_worker.py"), "classifier", *argv,
                             "--stats", str(daemons.stats_path(name))],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    daemons.procs[name] = proc
    return proc


def wait_workers(path: Path, want: dict[str, str], timeout: float = 60.0) -> None:
    """Until status.db lists exactly these workers (name -> the detector each serves), as the
    ventilator reported them to the sink; read as the sink rewrites it (a file has no event)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            seen = {w["name"]: w["detector"] for w in read_status(path)[1]} if path.exists() else {}
        except sqlite3.Error:  # not created yet, or its tables not yet
            seen = {}
        if seen == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"status.db never listed the workers {want} within {timeout}s; last: {seen}")


def replace(path: Path, text: str) -> None:
    """Write ``path`` whole at once, as an editor saving it does: a daemon watching it never reads half."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def in_mask(box: list[float]) -> bool:
    x, y = (box[0] + box[2]) / 2, box[3]  # the bottom-centre: where an object stands
    x1, y1, x2, y2 = MASK
    return x1 * W <= x <= x2 * W and y1 * H <= y <= y2 * H


def green(image: np.ndarray) -> int:
    """Pixels of the colour sink.store.snapshots draws boxes in."""
    b, g, r = (image[..., i].astype(int) for i in range(3))
    return int(((g > 200) & (b < 80) & (r < 80)).sum())


def mqtt_until(sub: Subscriber, done: Callable[[list[tuple[str, Any, bool]]], bool],
               seen: list[tuple[str, Any, bool]], timeout: float = 30.0) -> None:
    """Take MQTT messages into ``seen`` until ``done(seen)``; each is awaited, never slept for."""
    deadline = time.monotonic() + timeout
    while not done(seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"MQTT never showed it within {timeout}s; topics: {sorted({t for t, _, _ in seen})}")
        seen += sub.take(1, timeout=left)


def test_zones_masks_rules_routing_and_home_assistant_from_one_file(daemons, broker: int, tmp_path: Path) -> None:
    clip = tmp_path / "yard.mp4"
    make_sample_clip(clip, seconds=12, width=W, height=H, covered=None)  # 120 frames at the file's fps = 10
    config = write_config(tmp_path, clip, broker)
    good = config.read_text()
    cfg = ("--config", str(config))
    data = tmp_path / "data"
    mqtt = Subscriber(broker, "#", raw=True)  # Home Assistant's view: everything, from before the sink starts
    try:
        daemons.start("sink", "sink", *cfg, "--exit-when-drained", "yard")
        daemons.start("ventilator", "ventilator", *cfg)
        start_shapes_worker(daemons, "objects-1", *cfg, "--detector", "shapes", "--serves", "objects",
                            "--name", "objects-1")
        daemons.start("covered-1", "classifier", *cfg, "--detector", "covered", "--serves", "covered",
                      "--name", "covered-1")
        daemons.start("plates-1", "classifier", *cfg, "--detector", "covered", "--serves", "plates",
                      "--name", "plates-1")
        # every worker known before the first frame: a frame for a detector no connected worker
        # serves yet would be counted unserved, not queued
        wait_workers(data / "status.db", {"objects-1": "objects", "covered-1": "covered", "plates-1": "plates"})

        # a bad day: a rule naming a zone yard lacks. check-config says where; the running sink,
        # told to reload, refuses the file and keeps what it runs with
        line = good.splitlines().index(RULE) + 1
        replace(config, good.replace(RULE, TYPO))
        checked = subprocess.run([sys.executable, "-m", "camwire", "check-config", str(config)], cwd=ROOT,
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode == 2, checked.stdout + checked.stderr
        assert f"{config}:{line}:" in checked.stderr and "raod" in checked.stderr, checked.stderr
        daemons.procs["sink"].send_signal(signal.SIGHUP)
        wait_log(tmp_path / "sink.log", lambda r: r.get("file") == str(config) and r.get("line") == line,
                 timeout=30, proc=daemons.procs["sink"])
        assert daemons.procs["sink"].poll() is None  # still running
        replace(config, good)  # the file as it was: nothing new to take (the same digest)

        daemons.start("extractor", "extractor", *cfg)
        assert daemons.wait("sink", timeout=120) == 0  # --exit-when-drained yard: every result in, objects ended
        for name in ("extractor", "objects-1", "covered-1", "plates-1", "ventilator"):
            assert daemons.stop(name) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]

        # Home Assistant: the sink's last word is <prefix>/available offline, so all before it is in
        seen: list[tuple[str, Any, bool]] = []
        mqtt_until(mqtt, lambda s: ("camwire/available", b"offline") in [(t, p) for t, p, _ in s], seen)
    finally:
        mqtt.close()
    # ... and kept by the broker for a Home Assistant that connects later
    late = Subscriber(broker, "homeassistant/#", raw=True)
    try:
        kept: list[tuple[str, Any, bool]] = []
        mqtt_until(late, lambda s: len({t for t, _, retain in s if retain}) >= 5 + len(wire.SWITCHES), kept)
    finally:
        late.close()

    # routing: each frame to one worker of each detector yard wants, none to the third
    sent = daemons.stats("extractor")["yard"]["sent"]
    sink, vent = daemons.stats("sink"), daemons.stats("ventilator")
    assert sent == 120, sent
    assert vent["dispatched"]["yard"] == 2 * sent and not vent.get("unserved")
    assert vent["workers"].get("plates-1", {}).get("dispatched", 0) == 0
    assert daemons.stats("objects-1")["processed"] == {"yard": sent}
    assert daemons.stats("covered-1")["processed"] == {"yard": sent}
    assert daemons.stats("plates-1").get("processed", {}).get("yard", 0) == 0
    assert sink["results"]["yard"] == 2 * sent

    # the refused reload, counted (the events below are the running rules at work)
    assert sink["reloads"]["refused"] >= 1, sink["reloads"]

    # tracked objects: discs alone (the rule's zone), each a start ... an end, in the road, never in the mask
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    objects: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["type"] == "object":
            objects[e["object_id"]].append(e)
    assert len(objects) == 2, {k: [(e["phase"], e["label"], e["box"]) for e in v] for k, v in objects.items()}
    for evs in objects.values():
        phases = [e["phase"] for e in evs]
        assert phases[0] == "start" and phases[-1] == "end" and phases.count("start") == phases.count("end") == 1
        assert {e["label"] for e in evs} == {"disc"}
        assert all(e["zones"] == ["road"] for e in evs)
        assert all(e["worker"] == "objects-1" and e["detector"] == "shapes" for e in evs)
        assert not [e["box"] for e in evs if in_mask(e["box"])]
        # each disc enters from the right, in the mask: it is tracked from its first frame out of it
        # (the disc rolls 11 pixels a frame at fps = 10)
        x1, _, x2, _ = evs[0]["box"]
        assert MASK[0] * W - 20 < (x1 + x2) / 2 < MASK[0] * W, evs[0]["box"]
        assert all(e["box"][3] >= ROAD_TOP * H for e in evs)
    assert sink["objects"]["yard"]["start"] == sink["objects"]["yard"]["end"] == 2
    suppressed = sink["suppressed"]["yard"]
    assert suppressed["masked"] > 0 and suppressed["zones"] >= 1, suppressed  # the boxes, held back

    # snapshots: the object's best frame with its box drawn, the frame as it came, and the JSON
    for evs in objects.values():
        snap = data / evs[-1]["snapshot"]
        clean = snap.with_name(snap.name.replace(".jpg", ".clean.jpg"))
        meta = snap.with_name(snap.name.replace(".jpg", ".json"))
        assert snap.is_file() and clean.is_file() and meta.is_file()
        assert json.loads(meta.read_text())["snapshot"] == evs[-1]["snapshot"]
        assert json.loads(meta.read_text())["object_id"] == evs[0]["object_id"]
        assert green(cv2.imread(str(snap))) > green(cv2.imread(str(clean))) + 100  # the box drawn

    # Home Assistant's discovery for yard, and its states, on the real broker
    last = {topic: payload for topic, payload, _ in seen}  # each topic's newest: what the broker retains
    configs = {topic: json.loads(payload) for topic, payload in last.items() if topic.startswith("homeassistant/")}
    assert set(configs) == {"homeassistant/binary_sensor/camwire_yard/motion/config",
                            "homeassistant/image/camwire_yard/snapshot/config",
                            "homeassistant/binary_sensor/camwire_yard/connectivity/config",
                            "homeassistant/binary_sensor/camwire_yard/disc_occupancy/config",
                            "homeassistant/sensor/camwire_yard/disc_count/config",  # no box: never an event
                            *[f"homeassistant/switch/camwire_yard/{s}/config" for s in wire.SWITCHES]}
    assert {topic for topic, _, retain in kept if retain} == set(configs)
    motion = configs["homeassistant/binary_sensor/camwire_yard/motion/config"]
    assert motion["device_class"] == "motion" and motion["state_topic"] == "camwire/yard/motion"
    assert configs["homeassistant/image/camwire_yard/snapshot/config"]["image_topic"] == "camwire/yard/snapshot"
    assert configs["homeassistant/sensor/camwire_yard/disc_count/config"]["state_topic"] == "camwire/yard/disc/count"
    assert all(c["device"]["identifiers"] == ["camwire_yard"] and c["availability_topic"] == "camwire/available"
               for c in configs.values())
    # motion: one stretch (the shapes never stop), told in the events and to Home Assistant (its
    # end may come after the eos, through another worker, when the sink has gone)
    why = (daemons.stats("extractor")["yard"].get("dropped"), sink.get("motion_messages"), sink["outputs"]["mqtt"])
    assert [e["type"] for e in events if e["type"] == "motion_start"] == ["motion_start"], why
    assert b"ON" in [payload for topic, payload, _ in seen if topic == "camwire/yard/motion"], why  # motion_start
    counts = [payload for topic, payload, _ in seen if topic == "camwire/yard/disc/count"]
    assert b"1" in counts and counts[-1] == b"0"  # one disc at a time, none at the end
    assert last["camwire/yard/disc/occupied"] == b"OFF"
    assert cv2.imdecode(np.frombuffer(last["camwire/yard/snapshot"], np.uint8), cv2.IMREAD_COLOR).shape == (H, W, 3)
