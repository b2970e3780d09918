"""What results and camera status become: events. Pure logic, no sockets or files.

Event (a JSON line, and a msgpack map on the sink's PUB socket)::

    {"id", "type", "camera", "ts" (capture time, s since the epoch), "seq",
     "detections": [{"label", "confidence", "box": [x1, y1, x2, y2]}], "snapshot": path | None, ...}

- ``detection`` / ``motion``: a result with detections (label ``motion`` -> ``motion``), at most
  one per camera and type per ``cooldown`` seconds of capture time; the rest are counted.
  The camera's rule (classifier.rules) decides first: detections of other labels or below its
  confidence are ignored, a label must be seen in ``min_frames`` consecutive results, and
  outside its active windows no detection or motion event is emitted (counted as
  ``outside_schedule``). Covered and online/offline events are never held back.
- ``camera_covered`` after ``covered_after`` consecutive covered frames (the detector says how
  many), one ``camera_uncovered`` after as many clear ones: one event each way, never a stream.
- ``camera_offline`` / ``camera_online`` when an extractor reports a change of state.
Results of one camera may arrive out of order from different workers; a result older than one
already seen does not move the covered state back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from classifier.rules import Rules
from common.counters import Counters


@dataclass(slots=True)
class CameraState:
    last_seq: int = -1
    covered: bool = False
    run: int = 0  # consecutive frames disagreeing with ``covered``
    online: bool | None = None
    streak: int = 0  # consecutive results with a detection the camera's rule wants
    last_emitted: dict[str, float] = field(default_factory=dict)
    results: int = 0
    expected: int | None = None  # set by eos: results the sink will get in all


class Events:
    def __init__(self, cooldown_s: float = 1.0, rules: Rules | None = None) -> None:
        self.cooldown_s = cooldown_s
        self.rules = rules or Rules()
        self.cameras: dict[str, CameraState] = {}
        self.counters = Counters()

    def camera(self, name: str) -> CameraState:
        return self.cameras.setdefault(name, CameraState())

    def on_result(self, r: dict[str, Any]) -> list[dict[str, Any]]:
        cam = self.camera(r["camera"])
        cam.results += 1
        self.counters.add("results", r["camera"])
        if r.get("error"):
            self.counters.add("result_errors", r["camera"])
        ts = r["ts_ns"] / 1e9
        events = []
        fresh = r["seq"] > cam.last_seq
        cam.last_seq = max(cam.last_seq, r["seq"])
        flags = r.get("flags") or {}
        if "covered" in flags and fresh:
            if bool(flags["covered"]) != cam.covered:
                cam.run += 1
                if cam.run >= int(flags.get("covered_after", 1)):
                    cam.covered, cam.run = not cam.covered, 0
                    events.append(self._event("camera_covered" if cam.covered else "camera_uncovered", r,
                                              extra={"scene": flags.get("scene")}))
            else:
                cam.run = 0
        rule = self.rules.for_camera(r["camera"])
        by_type: dict[str, list] = {}
        for det in r.get("detections") or []:
            by_type.setdefault("motion" if det["label"] == "motion" else "detection", []).append(det)
        wanted = rule.wanted(by_type.pop("detection", []))
        cam.streak = cam.streak + 1 if wanted else 0
        if wanted:
            if cam.streak < rule.min_frames:
                self.counters.add("suppressed", r["camera"], "min_frames")
            else:
                by_type["detection"] = wanted
        if by_type and not rule.active_at(ts):
            self.counters.add("suppressed", r["camera"], "outside_schedule", n=len(by_type))
            by_type = {}
        for etype, dets in by_type.items():
            last = cam.last_emitted.get(etype)
            if last is not None and abs(ts - last) < self.cooldown_s:
                self.counters.add("suppressed", r["camera"], etype)
                continue
            cam.last_emitted[etype] = ts
            events.append(self._event(etype, r, detections=dets))
        return events

    def on_status(self, s: dict[str, Any]) -> list[dict[str, Any]]:
        cam = self.camera(s["camera"])
        if s.get("state") == "connecting":
            return []  # not yet known either way
        online = s.get("state") == "online"
        if cam.online == online:
            return []
        cam.online = online
        event = {"id": f"{s['camera']}-{s.get('ts_ns', 0)}-{'online' if online else 'offline'}",
                 "type": "camera_online" if online else "camera_offline", "camera": s["camera"],
                 "ts": s.get("ts_ns", 0) / 1e9, "seq": None, "detections": [], "snapshot": None}
        if not online:
            event["reason"] = s.get("reason")
        self.counters.add("events", event["type"])
        return [event]

    def on_eos(self, body: dict[str, Any]) -> None:
        self.camera(body["camera"]).expected = int(body.get("results", 0))

    def drained(self, camera: str) -> bool:
        cam = self.cameras.get(camera)
        return cam is not None and cam.expected is not None and cam.results >= cam.expected

    def _event(self, etype: str, r: dict[str, Any], detections: list | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        self.counters.add("events", etype)
        return {"id": f"{r['camera']}-{r['seq']}-{etype}", "type": etype, "camera": r["camera"],
                "ts": r["ts_ns"] / 1e9, "seq": r["seq"], "detections": detections or [],
                "snapshot": None, "worker": r.get("worker"), "detector": r.get("detector"),
                **(extra or {})}
