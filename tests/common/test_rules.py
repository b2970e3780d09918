"""Per-camera rules and schedules decide which detections become tracked objects' events."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from camwire.sink.events import EventIds
from camwire.common.rules import load_rules
from camwire.sink.tracking import Tracking
from camwire.common import wire
from conftest import ROOT, tcp

# Still boxes, a track's score and stationary objects left out (threshold 0, stationary_after 0):
# those are tests/sink/test_filters.py's
RULES = """
[rules]
labels = ["*"]
min_confidence = 0.3
threshold = 0
min_frames = 1
stationary_after = 0

[cameras.yard.rules]
labels = ["person", "car"]
min_confidence = 0.5
threshold = 0
min_frames = 3
stationary_after = 0
timezone = "Europe/Paris"
active = ["22:00-06:00"]
"""


def at(hh: int, mm: int, tz: str = "Europe/Paris") -> float:
    return datetime(2026, 11, 21, hh, mm, tzinfo=ZoneInfo(tz)).timestamp()


def result(camera: str, seq: int, ts: float, *dets: tuple[str, float]) -> wire.Result:
    """Each label a box of its own, still from frame to frame: one tracked object per label."""
    place = {"person": 0, "car": 1, "dog": 2, "cat": 3}
    return wire.Result(camera=camera, seq=seq, ts_ns=int(ts * 1e9), width=640, height=360,
                       detections=[wire.Detection(lab, c, (10 + 100 * place[lab], 10, 90 + 100 * place[lab], 90))
                                   for lab, c in dets])


@pytest.fixture
def rules(tmp_path: Path):
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return load_rules(path)


def starts(rules, camera: str, frames: list[list[tuple[str, float]]], t0: float) -> list[tuple[int, str]]:
    """(frame, label) of each tracked object's start (results in order, one a second)."""
    t = Tracking(EventIds(), rules, gone_s=100.0, window=1)
    out = []
    for i, dets in enumerate(frames + [[]]):  # one more: the window of 1 holds the newest
        out += [(e.seq, e.label) for e, _ in t.on_result(result(camera, i, t0 + i, *dets), None, 0.0)
                if e.phase == "start"]
    return out


def test_labels_confidence_and_min_frames_start_objects(rules) -> None:
    frames = [[("person", 0.9)], [("person", 0.8)], [("person", 0.9), ("dog", 0.99)], [("person", 0.4)],
              [("car", 0.6)], [("car", 0.7)], [("car", 0.9)], [("car", 0.9)]]
    # a person seen 3 times (a tracker confirms from the first frame it has), the car seen 3 times
    # from its second frame on (a new track is confirmed by its second); a dog is not wanted, 0.4 too unsure
    assert starts(rules, "yard", frames, at(23, 0)) == [(2, "person"), (7, "car")]


def test_schedule_in_the_cameras_time_zone(rules) -> None:
    def fires(ts: float) -> bool:
        return bool(starts(rules, "yard", [[("person", 0.9)]] * 3, ts))
    assert fires(at(22, 0)) and fires(at(2, 30)) and fires(at(5, 57))  # over midnight
    assert not fires(at(21, 57)) and not fires(at(6, 0)) and not fires(at(12, 0))
    # the window is in the camera's zone: 21:30 UTC is 22:30 in Paris (in November, UTC+1)
    assert fires(at(21, 30, "UTC")) and not fires(at(21, 30))
    t = Tracking(EventIds(), rules, window=1)
    for i in range(3):
        t.on_result(result("yard", i, at(12, 0) + i, ("person", 0.9)), None, 0.0)
    assert t.counters.get("suppressed", "yard", "outside_schedule") == 3


def test_default_rule_and_cameras_without_rules(rules) -> None:
    assert starts(rules, "door", [[("cat", 0.31)]], at(12, 0)) == [(0, "cat")]  # the default: 0.3, any label
    assert starts(rules, "door", [[("cat", 0.29)]] * 3, at(12, 0)) == []
    from camwire.common.rules import Rules
    assert starts(Rules(), "door", [[("cat", 0.9)]] * 3, 1.0) == []  # no rules at all: people only


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
