"""Per-camera rules and schedules decide which detections become events."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from classifier.events import Events
from classifier.rules import load_rules
from common import wire
from conftest import ROOT, tcp

RULES = """
[rules]
min_confidence = 0.3

[cameras.yard.rules]
labels = ["person", "car"]
min_confidence = 0.5
min_frames = 3
timezone = "Europe/Paris"
active = ["22:00-06:00"]
"""


def at(hh: int, mm: int, tz: str = "Europe/Paris") -> float:
    return datetime(2026, 11, 21, hh, mm, tzinfo=ZoneInfo(tz)).timestamp()


def result(camera: str, seq: int, ts: float, *dets: tuple[str, float]) -> wire.Result:
    return wire.Result(camera=camera, seq=seq, ts_ns=int(ts * 1e9), width=4, height=4,
                       detections=[wire.Detection(lab, c, (0, 0, 1, 1)) for lab, c in dets])


@pytest.fixture
def events(tmp_path: Path) -> Events:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return Events(cooldown_s=0.0, rules=load_rules(path))


def test_labels_confidence_and_consecutive_frames(events: Events) -> None:
    night = at(23, 0)
    out = [events.on_result(result("yard", i, night + i, *d)) for i, d in enumerate([
        [("person", 0.9)], [("person", 0.8)], [("dog", 0.99)],  # a dog is not wanted: the run breaks
        [("person", 0.9)], [("person", 0.4)],  # too unsure: breaks it again
        [("car", 0.6)], [("person", 0.7)], [("person", 0.9), ("dog", 0.9)],  # third in a row: event
        [("car", 0.9)],
    ])]
    fired = [(i, [d.label for d in e.detections]) for i, evs in enumerate(out) for e in evs]
    assert fired == [(7, ["person"]), (8, ["car"])]
    assert events.counters.get("suppressed", "yard", "min_frames") == 5


def test_schedule_in_the_cameras_time_zone(events: Events) -> None:
    def fires(ts: float) -> bool:
        e = Events(cooldown_s=0.0, rules=events.rules)
        return any(e.on_result(result("yard", i, ts + i, ("person", 0.9))) for i in range(3))
    assert fires(at(22, 0)) and fires(at(2, 30)) and fires(at(5, 59))  # over midnight
    assert not fires(at(21, 58)) and not fires(at(6, 0)) and not fires(at(12, 0))
    # the window is in the camera's zone: 21:30 UTC is 22:30 in Paris (in November, UTC+1)
    assert fires(at(21, 30, "UTC")) and not fires(at(21, 30))
    e = Events(cooldown_s=0.0, rules=events.rules)
    for i in range(3):
        e.on_result(result("yard", i, at(12, 0) + i, ("person", 0.9)))
    assert e.counters.get("suppressed", "yard", "outside_schedule") == 1


def test_default_rule_and_cameras_without_rules(tmp_path: Path, events: Events) -> None:
    assert events.on_result(result("door", 0, at(12, 0), ("cat", 0.31)))  # the default: 0.3, any label
    assert not events.on_result(result("door", 1, at(12, 0) + 5, ("cat", 0.29)))
    assert Events(cooldown_s=0.0).on_result(result("door", 0, 1.0, ("cat", 0.01)))  # no rules at all


def test_bad_rules_are_refused_with_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[cameras.yard.rules]\nlabels = ["person"\nmin_frames = 2\n')
    with pytest.raises(ValueError, match=r"bad.toml: Unclosed array \(at line 3, column 1\)"):
        load_rules(bad)
    bad.write_text('[cameras.yard.rules]\nactive = ["25:00-06:00"]\n')
    with pytest.raises(ValueError, match=r"cameras.yard.rules.active: '25:00-06:00'"):
        load_rules(bad)
    bad.write_text('[cameras.yard.rules]\ntimezone = "Mars/Olympus"\nmin_confidense = 0.4\n')
    with pytest.raises(ValueError, match="unknown key.*min_confidense"):
        load_rules(bad)
    done = subprocess.run([sys.executable, "-m", "camwire", "sink", "--bind", tcp(), "--events",
                           str(tmp_path / "e.jsonl"), "--rules", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "min_confidense" in done.stderr
