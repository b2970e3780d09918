"""Per-camera rules: what a detection must be to become an event. Pure logic, no sockets.

A rule applies to tracked objects (sink.tracking): it names the labels of interest, a
minimum confidence (less sure detections are not tracked), how many frames an object must be
seen in before its ``start`` (``min_frames``), the camera's zones an object must have entered
(``zones = ["driveway"]``; common.config's ``[cameras.NAME] zones``), and the time windows in
which the camera is watched, in the camera's own time zone (``active = ["22:00-06:00"]`` runs
over midnight). Written in TOML, in the same shape as
``camwire.toml``'s cameras::

    [rules]                      # the default for cameras without their own
    min_confidence = 0.4

    [cameras.yard.rules]
    labels = ["person", "car"]
    min_confidence = 0.5
    min_frames = 3
    timezone = "Europe/Paris"
    active = ["22:00-06:00"]

A camera with no rule and no default gets every detection, at once, at any time.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from camwire.common.wire import Detection

KEYS = {"labels", "min_confidence", "min_frames", "timezone", "active", "zones"}


@dataclass(frozen=True, slots=True)
class Rule:
    labels: frozenset[str] | None = None  # None: every label
    min_confidence: float = 0.0
    min_frames: int = 1
    timezone: ZoneInfo = ZoneInfo("UTC")
    active: tuple[tuple[time, time], ...] = ()  # empty: always
    zones: frozenset[str] | None = None  # None: anywhere; else an object must enter one of these (camera zones)

    def wanted(self, detections: list[Detection]) -> list[Detection]:
        return [d for d in detections
                if (self.labels is None or d.label in self.labels) and d.confidence >= self.min_confidence]

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
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise ValueError(f"{where}.labels: a list of names, like [\"person\", \"car\"]")
    conf = table.get("min_confidence", 0.0)
    if not isinstance(conf, (int, float)) or not 0 <= conf <= 1:
        raise ValueError(f"{where}.min_confidence: a number from 0 to 1, not {conf!r}")
    frames = table.get("min_frames", 1)
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"{where}.min_frames: a whole number of at least 1, not {frames!r}")
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
    return Rule(frozenset(labels) if labels is not None else None, float(conf), frames, zone,
                tuple(_window(w, f"{where}.active") for w in windows), frozenset(zones) if zones else None)


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
