"""Per-camera rules: what a detection must be to become an event. Pure logic, no sockets.

A rule names the labels of interest, a minimum confidence, how many consecutive frames must
show the label, and the time windows in which the camera is watched, in the camera's own time
zone (``active = ["22:00-06:00"]`` runs over midnight). Written in TOML, in the same shape as
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

from common.wire import Detection

KEYS = {"labels", "min_confidence", "min_frames", "timezone", "active"}


@dataclass(frozen=True, slots=True)
class Rule:
    labels: frozenset[str] | None = None  # None: every label
    min_confidence: float = 0.0
    min_frames: int = 1
    timezone: ZoneInfo = ZoneInfo("UTC")
    active: tuple[tuple[time, time], ...] = ()  # empty: always

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
    return Rule(frozenset(labels) if labels is not None else None, float(conf), frames, zone,
                tuple(_window(w, f"{where}.active") for w in windows))


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
    for name, cam in (config.get("cameras") or {}).items():
        if isinstance(cam, dict) and "rules" in cam:
            cameras[name] = parse_rule(cam["rules"], f"cameras.{name}.rules")
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
