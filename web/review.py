"""The review page's items: a camera's tracked objects grouped by when they were there.

Reads the events index (web.events_index: one row per tracked object with its newest phase and
the list of its phases, and the motion_start / motion_end rows); holds no state. Nothing goes over the wire here:
:func:`page` gives the dict ``GET /api/review`` sends (web.review_api).

An item is one camera's objects whose stays ``[first_seen, last_seen]`` overlap, or are less
than GAP_S apart: a person walking past and the car that followed are one thing to look at.
Its id is its first object's object_id (stable while objects join it later); it is an *alert*
when one of its objects has an alert label (``[web] alert_labels``, person by default) and, if
``alert_zones`` are set, is in one of them; else a *detection*. Items go newest first by their
start; a page's cursor is the start of its last item: merged items never overlap, so every
object of an older item began before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import quote

from camwire.common.settings.web import ALERT_LABELS
from camwire.web.events_index import EventIndex

GAP_S = 5.0  # objects less than this apart are one item
PRE_S = 5.0  # an item's clip starts this long before its first object ...
POST_S = 5.0  # ... and ends this long after its last
MAX_CLIP_S = 3600.0  # as web.api's range clip allows
SCAN_PAGE = 500  # objects read from the index at a time (its most)
MAX_SCAN = 5000  # objects read for one page of items at most: a rare filter stops here
MOTION_LOOKBACK_S = 3600.0  # a motion_start this long before an item can still be its motion
MAX_LIMIT = 200
SEVERITIES = ("alert", "detection")


@dataclass(frozen=True)
class Alerts:
    """What makes an item an alert."""

    labels: frozenset[str] = frozenset(ALERT_LABELS)
    zones: frozenset[str] = frozenset()  # empty: anywhere

    @classmethod
    def of(cls, labels: Iterable[str] | None, zones: Iterable[str] | None) -> "Alerts":
        return cls(frozenset(ALERT_LABELS if labels is None else labels), frozenset(zones or ()))

    def hit(self, obj: dict[str, Any]) -> bool:
        if obj.get("label") not in self.labels:
            return False
        return not self.zones or bool(self.zones & set(obj.get("zones") or ()))


@dataclass
class Item:
    camera: str
    objects: list[dict[str, Any]] = field(default_factory=list)  # by first_seen
    start: float = 0.0
    end: float = 0.0

    @property
    def id(self) -> str:
        return self.objects[0]["object_id"]


def span(obj: dict[str, Any]) -> tuple[float, float]:
    """An object's stay; a line without first/last sighting stays at its own ts."""
    first = obj.get("first_seen")
    first = obj["ts"] if first is None else first
    last = obj.get("last_seen")
    return first, max(first, first if last is None else last)


def group(objects: Iterable[dict[str, Any]], gap_s: float = GAP_S) -> list[Item]:
    """Objects (of any cameras, any order) as items, newest first."""
    by_camera: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_camera.setdefault(obj.get("camera") or "", []).append(obj)
    items: list[Item] = []
    for camera, objs in by_camera.items():
        objs.sort(key=lambda o: (span(o)[0], o.get("object_id") or ""))
        current: Item | None = None
        for obj in objs:
            first, last = span(obj)
            if current is not None and first <= current.end + gap_s:
                current.objects.append(obj)
                current.end = max(current.end, last)
                continue
            current = Item(camera, [obj], first, last)
            items.append(current)
    items.sort(key=lambda i: (i.start, i.id), reverse=True)
    return items


def severity(item: Item, alerts: Alerts) -> str:
    return "alert" if any(alerts.hit(o) for o in item.objects) else "detection"


def motion_spans(rows: list[dict[str, Any]], start: float, end: float) -> list[list[float]]:
    """A camera's motion_start/motion_end rows (any order) as [from, to] spans clipped to
    [start, end]; motion still going at ``end`` runs to it."""
    spans: list[list[float]] = []
    opened: float | None = None
    for row in sorted(rows, key=lambda r: r["ts"]):
        if row["type"] == "motion_start":
            opened = row["ts"] if opened is None else opened
        elif opened is not None:
            spans.append([opened, row["ts"]])
            opened = None
    if opened is not None:
        spans.append([opened, end])
    return [[max(a, start), min(b, end)] for a, b in spans if b >= start and a <= end]


def clip_url(camera: str, start: float, end: float) -> str:
    """The recorded range around an item (web.api's range clip), at most MAX_CLIP_S long."""
    a = start - PRE_S
    b = min(end + POST_S, a + MAX_CLIP_S)
    return f"/api/recordings/{quote(camera, safe='')}/clip.mp4?start={a:.1f}&end={b:.1f}"


def _object(obj: dict[str, Any], reviewed: bool) -> dict[str, Any]:
    first, last = span(obj)
    keys = ("object_id", "label", "phase", "zones", "snapshot_url", "thumb_url", "top_score", "score",
            "stationary", "duration", "id")
    return {**{k: obj.get(k) for k in keys}, "first_seen": first, "last_seen": last, "reviewed": reviewed}


def page(index: EventIndex, alerts: Alerts, reviewed_of: Callable[[list[str]], set[str]], *,
         camera: str | None = None, label: str | None = None, zone: str | None = None,
         severity_is: str | None = None, reviewed: bool | None = None, before: float | None = None,
         limit: int = 50) -> dict[str, Any]:
    """``{"items": [...], "next": cursor or None}``: items newest first that match every filter
    given (an item matches a label or zone when one of its objects does; ``reviewed``: whether
    all its objects are marked). ``reviewed_of(object_ids)``: those marked (sink.store.reviews)."""
    limit = max(1, min(MAX_LIMIT, int(limit)))
    objects: list[dict[str, Any]] = []
    cursor: str | None = None
    until = None if before is None else before - 1e-6
    chosen: list[tuple[Item, str, set[str]]] = []
    exhausted = False
    while True:
        got = index.query(camera=camera, type="object", until=until, before=cursor, limit=SCAN_PAGE)
        objects += got["events"]
        cursor = got["next"]
        exhausted = cursor is None
        items = group(objects)
        if not exhausted:
            items = items[:-1]  # its older objects may not be read yet: the next page has it whole
        chosen = []
        for item in items:
            sev = severity(item, alerts)
            if severity_is and sev != severity_is:
                continue
            if label and not any(o.get("label") == label for o in item.objects):
                continue
            if zone and not any(zone in (o.get("zones") or ()) for o in item.objects):
                continue
            chosen.append((item, sev, set()))
        if reviewed is not None or chosen:
            marks = reviewed_of([o["object_id"] for item, _, _ in chosen for o in item.objects])
            chosen = [(item, sev, marks) for item, sev, _ in chosen
                      if reviewed is None or all(o["object_id"] in marks for o in item.objects) == reviewed]
        if len(chosen) > limit or exhausted or len(objects) >= MAX_SCAN:
            break
    more = len(chosen) > limit or not exhausted
    chosen = chosen[:limit]
    out = [_item(index, item, sev, marks) for item, sev, marks in chosen]
    if more and chosen:
        next_cursor: float | None = chosen[-1][0].start
    elif more and items:
        next_cursor = items[-1].start  # a page of nothing that matched: go on past what was read
    else:
        next_cursor = None
    return {"items": out, "next": next_cursor}


def _item(index: EventIndex, item: Item, sev: str, marks: set[str]) -> dict[str, Any]:
    rows = [e for kind in ("motion_start", "motion_end")
            for e in index.query(camera=item.camera, type=kind, since=item.start - MOTION_LOOKBACK_S,
                                 until=item.end + POST_S, limit=100)["events"]]
    objects = [_object(o, o["object_id"] in marks) for o in item.objects]
    phases = index.phases([o["object_id"] for o in objects])
    for o in objects:
        o["phases"] = phases.get(o["object_id"], [])
    return {
        "id": item.id, "camera": item.camera, "start": item.start, "end": item.end, "severity": sev,
        "labels": sorted({o["label"] for o in objects if o.get("label")}),
        "zones": sorted({z for o in objects for z in o.get("zones") or ()}),
        "objects": objects, "reviewed": all(o["reviewed"] for o in objects),
        "clip_url": clip_url(item.camera, item.start, item.end),
        "clip_start": item.start - PRE_S,
        "motion": motion_spans(rows, item.start - PRE_S, item.end + POST_S),
    }


def filters(index: EventIndex) -> dict[str, list[str]]:
    """What the page's selects offer: the cameras, labels and zones the index has seen."""
    return {"cameras": index.cameras(), "labels": index.labels(), "zones": index.zones(),
            "severities": list(SEVERITIES)}
