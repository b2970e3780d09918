"""Per-camera rules: what a detection must be to become an event. Pure logic, no sockets.

A rule applies to tracked objects (sink.tracking). Written in TOML, in the same shape as
``camwire.toml``'s cameras::

    [rules]                      # the default for cameras without their own
    labels = ["person", "car"]   # what is tracked; ["*"]: every label the model knows
    min_confidence = 0.5         # a box less sure than this is not even drawn
    threshold = 0.7              # the median of a track's recent scores must reach this before it starts
    min_frames = 2               # sightings before it starts
    stationary_after = 10        # seconds without moving: stationary (0: never)

    [rules.filters.car]          # per label; what it does not set comes from the rule
    min_confidence = 0.6
    min_area = 0.002             # of the frame's area (below 1), or pixels (1 and above)
    max_area = 0.5
    min_ratio = 0.5              # width / height
    max_ratio = 4

    [cameras.yard.rules]         # a camera's own rule (the whole rule: nothing inherited from [rules])
    labels = ["person", "car"]
    zones = ["driveway"]         # an object must have entered one of the camera's zones
    timezone = "Europe/Paris"
    active = ["22:00-06:00"]     # watched in these windows of the camera's time; over midnight is fine

What is tracked by default, with no rule at all: people (``DEFAULT_LABELS``), boxes from 0.5,
tracks whose median score reaches 0.7, seen twice, at any time. Labels not tracked make no
event, no MQTT entity and no box in the live view; boxes the filters drop are not drawn either
(:meth:`Rule.shown`).
"""

from __future__ import annotations

import statistics
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from camwire.common.wire import Detection

DEFAULT_LABELS = frozenset({"person"})
EVERY_LABEL = "*"
FILTER_KEYS = {"min_confidence", "threshold", "min_frames", "min_area", "max_area", "min_ratio", "max_ratio"}
KEYS = {"labels", "timezone", "active", "zones", "stationary_after", "filters"} | FILTER_KEYS
STATIONARY_AFTER_S = 10.0  # seconds still before an object is stationary
SCORES_KEPT = 10  # a track's score is the median of this many of its newest scores


@dataclass(frozen=True, slots=True)
class Filter:
    """What a box and a track of one label must be (Frigate's object filters, by the same names)."""

    min_confidence: float = 0.5  # a box's own score
    threshold: float = 0.7  # the median of the track's newest SCORES_KEPT scores, before it starts
    min_frames: int = 2
    min_area: float = 0.0  # below 1: a share of the frame's area; 1 and above: pixels
    max_area: float = 1.0
    min_ratio: float = 0.0  # width / height
    max_ratio: float = float("inf")

    def keeps(self, d: Detection, width: int, height: int) -> bool:
        """Does one box pass (score, area, ratio)? The track's score is :meth:`sure`'s."""
        if d.confidence < self.min_confidence:
            return False
        x1, y1, x2, y2 = d.box
        w, h = max(0.0, x2 - x1), max(0.0, y2 - y1)
        area, frame = w * h, max(1, width * height)
        if area < (self.min_area * frame if self.min_area < 1 else self.min_area):
            return False
        if area > (self.max_area * frame if self.max_area <= 1 else self.max_area):
            return False
        ratio = w / h if h > 0 else float("inf")
        return self.min_ratio <= ratio <= self.max_ratio

    def sure(self, scores: list[float]) -> bool:
        """Is a track sure enough to start: seen ``min_frames`` times, its recent median at ``threshold``?"""
        return len(scores) >= self.min_frames and statistics.median(scores[-SCORES_KEPT:]) >= self.threshold


@dataclass(frozen=True, slots=True)
class Rule:
    labels: frozenset[str] | None = DEFAULT_LABELS  # None: every label
    base: Filter = Filter()  # for labels without their own
    filters: dict[str, Filter] = field(default_factory=dict)
    stationary_after_s: float = STATIONARY_AFTER_S  # 0: objects are never stationary (nor held as fixed)
    timezone: ZoneInfo = ZoneInfo("UTC")
    active: tuple[tuple[time, time], ...] = ()  # empty: always
    zones: frozenset[str] | None = None  # None: anywhere; else an object must enter one of these (camera zones)

    def tracks(self, label: str) -> bool:
        return self.labels is None or label in self.labels

    def filter(self, label: str) -> Filter:
        return self.filters.get(label, self.base)

    def passes(self, d: Detection, width: int, height: int) -> bool:
        """Is the box of a tracked label, and does it pass its label's filter?"""
        return self.tracks(d.label) and self.filter(d.label).keeps(d, width, height)

    def wanted(self, detections: list[Detection], width: int, height: int) -> list[Detection]:
        """What is tracked: the boxes that pass (motion boxes are not objects: out)."""
        return [d for d in detections if d.label != "motion" and self.passes(d, width, height)]

    def shown(self, detections: list[Detection], width: int, height: int) -> list[Detection]:
        """What a live view draws: :meth:`wanted`'s boxes and the motion boxes."""
        return [d for d in detections if d.label == "motion" or self.passes(d, width, height)]

    def active_at(self, ts: float) -> bool:
        if not self.active:
            return True
        now = datetime.fromtimestamp(ts, self.timezone).time()
        return any((start <= now < end) if start < end else (now >= start or now < end) for start, end in self.active)


ALWAYS = Rule()


def parse_rule(table: dict[str, Any], where: str) -> Rule:
    """A rule from its TOML table; ``where`` names it in errors (``cameras.yard.rules``)."""
    unknown = set(table) - KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KEYS))}")
    labels = table.get("labels")
    if labels is not None and not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise ValueError(f"{where}.labels: a list of names, like [\"person\", \"car\"] ([\"*\"]: every label)")
    base = _filter(table, Filter(), where)
    filters = table.get("filters", {})
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise ValueError(f"{where}.filters: tables by label, like [{where}.filters.person]")
    for label, ftable in filters.items():
        unknown = set(ftable) - FILTER_KEYS
        if unknown:
            raise ValueError(f"{where}.filters.{label}: unknown key(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(FILTER_KEYS))}")
    stationary = table.get("stationary_after", STATIONARY_AFTER_S)
    if isinstance(stationary, bool) or not isinstance(stationary, (int, float)) or stationary < 0:
        raise ValueError(f"{where}.stationary_after: seconds, 0 or more (0: never stationary), not {stationary!r}")
    try:
        zone = ZoneInfo(table.get("timezone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"{where}.timezone: unknown time zone {table.get('timezone')!r}") from None
    windows = table.get("active", [])
    if not isinstance(windows, list):
        raise ValueError(f"{where}.active: a list of \"HH:MM-HH:MM\" windows")
    zones = table.get("zones")
    if zones is not None and not (isinstance(zones, list) and zones and all(isinstance(x, str) for x in zones)):
        raise ValueError(f"{where}.zones: a list of the camera's zone names, like [\"driveway\"]")
    label_set = DEFAULT_LABELS if labels is None else None if EVERY_LABEL in labels else frozenset(labels)
    return Rule(label_set, base, {label: _filter(ftable, base, f"{where}.filters.{label}")
                                  for label, ftable in filters.items()},
                float(stationary), zone, tuple(_window(w, f"{where}.active") for w in windows),
                frozenset(zones) if zones else None)


def _filter(table: dict[str, Any], base: Filter, where: str) -> Filter:
    """``base`` with what ``table`` sets of FILTER_KEYS, each checked."""
    values: dict[str, Any] = {}
    for name in ("min_confidence", "threshold"):
        if name in table:
            values[name] = _number(table[name], f"{where}.{name}", 0.0, 1.0, "a number from 0 to 1")
    if "min_frames" in table:
        frames = table["min_frames"]
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"{where}.min_frames: a whole number of at least 1, not {frames!r}")
        values["min_frames"] = frames
    for name in ("min_area", "max_area", "min_ratio", "max_ratio"):
        if name in table:
            values[name] = _number(table[name], f"{where}.{name}", 0.0, float("inf"),
                                   "a number of 0 or more (areas: below 1 a share of the frame, else pixels)")
    out = replace(base, **values)
    if out.min_ratio > out.max_ratio:
        raise ValueError(f"{where}: min_ratio {out.min_ratio:g} is above max_ratio {out.max_ratio:g}")
    return out


def _number(value: Any, where: str, low: float, high: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{where}: {what}, not {value!r}")
    return float(value)


def _window(text: Any, where: str) -> tuple[time, time]:
    try:
        start, end = (time.fromisoformat(part.strip()) for part in str(text).split("-"))
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a window like \"22:00-06:00\"") from None
    if start == end:
        raise ValueError(f"{where}: {text!r} is empty")
    return start, end


@dataclass
class Rules:
    default: Rule = ALWAYS
    cameras: dict[str, Rule] | None = None

    def for_camera(self, camera: str) -> Rule:
        return (self.cameras or {}).get(camera, self.default)


def rules_from_config(config: dict[str, Any]) -> Rules:
    default = parse_rule(config["rules"], "rules") if "rules" in config else ALWAYS
    cameras = {}
    zones = {name: set(cam.get("zones") or {}) for name, cam in (config.get("cameras") or {}).items()
             if isinstance(cam, dict) and isinstance(cam.get("zones") or {}, dict)}
    for name, cam in (config.get("cameras") or {}).items():
        if isinstance(cam, dict) and "rules" in cam:
            cameras[name] = parse_rule(cam["rules"], f"cameras.{name}.rules")
            # a zone name that is not the camera's would hold back every object without a word
            unknown = sorted((cameras[name].zones or set()) - zones.get(name, set()))
            if unknown:
                raise ValueError(f"cameras.{name}.rules.zones: {unknown[0]!r} is not one of the camera's zones "
                                 f"({', '.join(sorted(zones.get(name, set()))) or 'it has none'})")
    if default.zones and zones and not any(default.zones & z for z in zones.values()):
        raise ValueError(f"rules.zones: no camera has a zone named {sorted(default.zones)[0]!r}")
    return Rules(default, cameras)


def load_rules(path: str | Path) -> Rules:
    """Rules from a TOML file; a file that does not parse or validate raises ValueError saying
    where (the parser gives the line and column)."""
    try:
        config = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        return rules_from_config(config)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
