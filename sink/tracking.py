"""Tracked objects: each camera's results in seq order, through a tracker, into object events.

Pure logic, no sockets or files (the sink writes what comes out). In: the results the sink
receives (wire.Result, with the frame's pixels when a worker found something: common.pixels.Pixels,
an LZ4 block never decoded here), in any order.
Out: ``(wire.Event, Snapshot | None)`` pairs; the event is ``type = "object"`` with a ``phase``:

- ``start``: a track sure enough by its label's filter (the camera's rule, common.rules: seen
  ``min_frames`` times, the median of its newest scores at ``threshold``) that has moved, or
  stands where objects of its label have moved before (see stationary objects below);
- ``update``: what changed, in ``changes``: ``label``, ``zones``, ``stationary``/``active`` at
  once; a higher top score (``score``) or a better snapshot at most one per ``update_every_s``
  of capture time per object (changes in between are folded into the next), ``snapshot`` among
  them only when clearly better (uncut where the last told was cut by the frame's edge, or
  SNAPSHOT_BETTER more sure). A stationary object sends no update until it moves;
- ``end``: not seen in the camera's frames for ``gone_s`` of capture time, or its camera ended,
  sent nothing for ``QUIET_S`` of wall time (:meth:`Tracking.tick`; longer than the extractor's
  motion heartbeat, so a parked car on a still scene is not ended and started again), or the
  sink stops.

All three carry ``object_id`` (the id of the start event), label (the one with the most summed
confidence over the object's frames), score (newest frame) and top score, first/last seen,
box, zones entered, and ``snapshot``: the object's best frame so far, the one with the highest
score among those whose box is not cut by the frame's edge (an edge-cut frame only until an
uncut one comes). When the best frame changed since the last event, its pixels and box ride
along as a :class:`Snapshot` for the sink to write (sink.store.snapshots makes the JPEG then, and
draws the box): a frame that is never an object's best is never encoded.

Per camera and detector: a sink.reorder window puts results back in seq order (late ones
are counted ``late/<camera>`` and not tracked), then ByteTrack (``supervision``) gives each
detection a track id. A camera served by two detectors (classifier.dispatch) has one stream
each: a fast ``covered`` worker running seconds ahead of an object model never makes the
model's results late, and each model's objects are tracked apart. A new track that starts
where a live object of its label was lost (within ``RELINK`` of its size: ByteTrack drops a
walker hidden by another for a frame or two) carries that object on (``relinked/<camera>``),
so a crossing stays one object.

Stationary objects: an object whose box stays over the box it had when it last moved (IoU of at
least MOVED_IOU) for the rule's ``stationary_after`` seconds is ``stationary`` (one update says so;
``active`` when it moves again), and is ended only after STATIONARY_GONE times ``gone_s`` unseen
(a parked car the model misses for a while is still the same car). An object last seen at an
edge of the picture going towards it has left: it ends after EXIT_S unseen, so a walker who
comes in there a moment later is a new object, not the one who left. An object that has never
moved since its first sighting, in a place (a cell of a PLACES grid over the frame) where no
object of its label was ever seen moving, is held back: it starts when it moves; one that stays
still for ``stationary_after`` there is *fixed* (a post the model takes for a person) and is
reported once per place as a ``suggested_mask`` event, with its snapshot, so the user can mask
it; it never alerts (``suppressed/<camera>/fixed`` when it ends).

The rule's labels and filters (common.rules) take detections out before tracking; outside the
rule's active windows nothing is tracked (``suppressed/<camera>/outside_schedule``). ``motion``
boxes are motion, not objects: never tracked. A camera's masks drop detections standing in
them (``suppressed/<camera>/masked``); its zones are listed as objects enter them, and a rule's
``zones`` holds back the start of an object until it has entered one (``.../zones`` if never).
With ``sightings=True`` (the sink's ``[upload] what = ["frames"]``, sink.store.frames) it also
keeps, until :meth:`Tracking.take_sightings`, every ``(object, seq, pixels)`` it tracked (each
frame an object was seen in, whose pixels the worker sent) and the objects that ended without ever
starting.

Bounded: ``MAX_PER_FRAME`` detections per frame (the most confident), ``MAX_OBJECTS`` live
objects per camera. Results that came after a
later one are counted ``reordered/<camera>``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import msgspec
import numpy as np

from camwire.sink.reorder import DEFAULT_MAX_WAIT_S, DEFAULT_WINDOW, Reorder
from camwire.common.pixels import Pixels
from camwire.common.rules import SCORES_KEPT, Rules
from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.geometry import Polygon, bottom_centre, contains, zones_of

MAX_PER_FRAME = 256  # detections a frame may hand the tracker; the rest (least confident) are counted
MAX_OBJECTS = 256  # live objects per camera; a new one past this is counted, not tracked
LOST_FRAMES = 30  # ByteTrack keeps a lost track this many of the camera's frames (our end is by time)
ACTIVATION = 0.0  # ByteTrack: the detector's threshold and the rule say what is sure enough (new tracks: 0.1)
MATCH = 0.9  # ByteTrack's cost (1 - IoU x score) below which a box continues a track
# Boxes are grown by this share of their size for matching only (a "buffered IoU"): a small person
# moves most of their width between sampled frames, and plain IoU loses them. On people-walking.mp4
# at 5 fps with the COCO SSD this halves the objects a crossing breaks into (123 -> 51).
PAD = 0.5
EDGE = 0.005  # a box within this share of a side from the frame's edge is cut by it
RELINK = 0.75  # a new track this near (in box sizes) to a lost object of its label is that object
MOVED_IOU = 0.5  # a box overlapping where the object last moved less than this: it moved
STATIONARY_GONE = 6  # a stationary object is ended after this many times gone_s unseen
PLACES = (32, 24)  # the grid (columns, rows) of places where objects of a label were seen moving
TRAIL = 5  # box centres kept per object: which way it was going when last seen
EXIT_S = 1.0  # an object last seen going out through an edge ends after this long unseen
EXIT_MARGIN = 0.05  # of the frame's side: a box this near an edge is at it
MAX_FIXED = 256  # places told as suggested masks, remembered per camera (so each is told once)
SNAPSHOT_BETTER = 0.1  # a snapshot this much more sure than the last told is worth telling
NOTABLE = frozenset({"label", "zones", "stationary", "active"})  # changes told at once
QUIET_S = 60.0  # a camera that sends no result this long (wall time) ends its objects

Box = tuple[float, float, float, float]
Out = tuple[wire.Event, "Snapshot | None"]


@dataclass(frozen=True, slots=True)
class Areas:
    """A camera's ``masks`` and ``zones`` (common.config, common.geometry): a detection standing
    (its box's bottom-centre) in a mask is dropped before tracking; an object lists the zones it
    has stood in, and a rule with ``zones`` starts only objects that entered one of them."""

    masks: tuple[Polygon, ...] = ()
    zones: dict[str, Polygon] = field(default_factory=dict)


def areas_from_config(cfg) -> dict[str, Areas]:
    """Each camera's masks and zones from a loaded common.config.Config (None: none)."""
    if cfg is None:
        return {}
    return {name: Areas(tuple(cam.masks), dict(cam.zones)) for name, cam in cfg.cameras.items()
            if cam.masks or cam.zones}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An object's best frame: its pixels (as the worker sent them, or the source's own when the
    extractor kept them: sink.source_frames), the box to draw and the frame's size (the source's,
    which the box is in; the pixels may be smaller: resized for detection)."""

    pixels: Pixels
    box: Box
    size: tuple[int, int]
    label: str


@dataclass(slots=True)
class TrackedObject:
    track_id: int
    first_seen_ns: int
    last_seen_ns: int
    box: Box
    score: float
    top_score: float = 0.0
    hits: int = 0
    label_sums: dict[str, float] = field(default_factory=dict)
    label: str = ""
    zones: list[str] = field(default_factory=list)
    object_id: str | None = None  # set at start
    best: Snapshot | None = None
    best_rank: tuple[bool, float] = (False, -1.0)
    best_new: bool = False  # a better frame than the one last sent
    changes: set[str] = field(default_factory=set)  # what changed since the last event (wire.Event.changes)
    scores: list[float] = field(default_factory=list)  # the newest scores (common.rules.SCORES_KEPT)
    anchor: Box = (0.0, 0.0, 0.0, 0.0)  # its box when it last moved (or first seen)
    anchor_ns: int = 0
    moved: bool = False  # ever, since first seen
    stationary: bool = False
    fixed: bool = False  # held: never moved, in a place no object of its label moved in
    told_rank: tuple[bool, float] = (False, -1.0)  # the snapshot last told worth telling
    trail: list[tuple[float, float]] = field(default_factory=list)  # its newest box centres (TRAIL)
    last_event_ns: int = 0
    snapshot_path: str | None = None
    worker: str | None = None
    detector: str | None = None
    seq: int | None = None


@dataclass(slots=True)
class CameraTracks:
    reorder: Reorder
    tracker: object  # supervision's ByteTrack
    objects: dict[int, TrackedObject] = field(default_factory=dict)
    last_ts_ns: int = 0  # newest capture time released to the tracker
    heard: float = 0.0  # monotonic time of the last result taken
    walked: dict[str, set[tuple[int, int]]] = field(default_factory=dict)  # label -> PLACES cells seen moving
    fixed: list[tuple[str, Box]] = field(default_factory=list)  # places told as suggested masks


def _byte_track():
    import supervision as sv

    with warnings.catch_warnings():  # deprecated in supervision 0.28 for the `trackers` package; kept to <0.31
        warnings.simplefilter("ignore")
        return sv.ByteTrack(track_activation_threshold=ACTIVATION, lost_track_buffer=LOST_FRAMES,
                            minimum_matching_threshold=MATCH, frame_rate=30)


class Tracking:
    def __init__(self, ids: Callable[[int, str, str], str], rules: Rules | None = None,
                 counters: Counters | None = None, gone_s: float = 5.0, update_every_s: float = 5.0,
                 window: int = DEFAULT_WINDOW, max_wait_s: float = DEFAULT_MAX_WAIT_S,
                 areas: dict[str, Areas] | None = None, sightings: bool = False) -> None:
        self.ids = ids  # sink.events.EventIds: unique ids shared with the sink's other events
        self.rules = rules or Rules()
        self.counters = counters if counters is not None else Counters()
        self.gone_ns, self.update_every_ns = int(gone_s * 1e9), int(update_every_s * 1e9)
        self.window, self.max_wait_s = window, max_wait_s
        self.areas = areas or {}  # camera -> its masks and zones (replaced whole on a reload)
        self.cameras: dict[tuple[str, str | None], CameraTracks] = {}  # (camera, detector) -> its stream
        # until take_sightings(): each (object, seq, pixels) tracked, and the objects ended unstarted
        self.sightings: list[tuple[TrackedObject, int, Pixels]] | None = [] if sightings else None
        self.unstarted: list[TrackedObject] = []

    # -- in ---------------------------------------------------------------------------------------

    def on_result(self, r: wire.Result, pixels: Pixels | None, now: float) -> list[Out]:
        """One result as it came; the events of every result this releases, in seq order."""
        key = (r.camera, r.detector)
        cam = self.cameras.get(key)
        if cam is None:
            cam = self.cameras[key] = CameraTracks(Reorder(self.window, self.max_wait_s), _byte_track())
        cam.heard = now
        before = cam.reorder.out_of_order
        released, late = cam.reorder.push(r.seq, r.ts_ns, (r, pixels), now, r.prev)
        if late:
            self.counters.add("late", r.camera)
        if cam.reorder.out_of_order > before:
            self.counters.add("reordered", r.camera)
        return self._track(r.camera, cam, released)

    def tick(self, now: float) -> list[Out]:
        """Results held past the window's time bound go on; cameras quiet for ``QUIET_S`` end their objects."""
        out: list[Out] = []
        quiet_s = max(QUIET_S, self.gone_ns / 1e9)
        for (name, _detector), cam in self.cameras.items():
            out += self._track(name, cam, cam.reorder.expire(now))
            if cam.objects and len(cam.reorder) == 0 and now - cam.heard >= quiet_s:
                out += self._end(name, cam, list(cam.objects.values()), cam.last_ts_ns)
        return out

    def finish(self, camera: str) -> list[Out]:
        """The camera ended (all its results are in) or the sink stops: everything goes out, and ends."""
        out: list[Out] = []
        for cam in self._streams(camera):
            out += self._track(camera, cam, cam.reorder.flush())
            out += self._end(camera, cam, list(cam.objects.values()), cam.last_ts_ns)
        return out

    def forget(self, camera: str) -> list[Out]:
        """A camera the sink lets go (common.admission): what it holds goes out and ends, then its streams go."""
        out = self.finish(camera)
        for key in [k for k in self.cameras if k[0] == camera]:
            del self.cameras[key]
        return out

    def take_sightings(self) -> tuple[list[tuple[TrackedObject, int, Pixels]], list[TrackedObject]]:
        """The frames objects were seen in since the last call, in the order tracked, and the
        objects that ended without a start (their frames are of no use); both cleared."""
        sightings, unstarted = self.sightings or [], self.unstarted
        self.sightings, self.unstarted = ([] if self.sightings is not None else None), []
        return sightings, unstarted

    def saved(self, camera: str, object_id: str | None, path: str | None) -> None:
        """The sink wrote an object's snapshot here: later events of the object name it."""
        if object_id is None or path is None:
            return
        for cam in self._streams(camera):
            for obj in cam.objects.values():
                if obj.object_id == object_id:
                    obj.snapshot_path = path

    def shown(self, r: wire.Result) -> wire.Result:
        """``r`` with only what live views draw: motion boxes and the boxes of tracked labels that
        pass their filters (common.rules.Rule.shown), outside the camera's masks (the tracker
        drops the same ones)."""
        if not r.detections:
            return r
        dets = self.rules.for_camera(r.camera).shown(r.detections, r.width, r.height)
        areas = self.areas.get(r.camera)
        if areas is not None and areas.masks:
            dets = [d for d in dets if d.label == "motion" or not _masked(d.box, areas.masks, r.width, r.height)]
        return r if len(dets) == len(r.detections) else msgspec.structs.replace(r, detections=dets)

    # -- tracking ---------------------------------------------------------------------------------

    def _streams(self, camera: str) -> list[CameraTracks]:
        return [cam for (name, _detector), cam in self.cameras.items() if name == camera]

    def _track(self, name: str, cam: CameraTracks, released: list[tuple[wire.Result, Pixels | None]]) -> list[Out]:
        out: list[Out] = []
        for r, pixels in released:
            out += self._frame(name, cam, r, pixels)
        return out

    def _frame(self, name: str, cam: CameraTracks, r: wire.Result, pixels: Pixels | None) -> list[Out]:
        import supervision as sv

        cam.last_ts_ns = max(cam.last_ts_ns, r.ts_ns)
        rule = self.rules.for_camera(name)
        dets = rule.wanted(r.detections, r.width, r.height)
        areas = self.areas.get(name)
        if areas is not None and areas.masks and dets:
            kept = [d for d in dets if not _masked(d.box, areas.masks, r.width, r.height)]
            if len(kept) < len(dets):
                self.counters.add("suppressed", name, "masked", n=len(dets) - len(kept))
            dets = kept
        if dets and not rule.active_at(r.ts_ns / 1e9):
            self.counters.add("suppressed", name, "outside_schedule", n=len(dets))
            dets = []
        if len(dets) > MAX_PER_FRAME:
            self.counters.add("suppressed", name, "too_many", n=len(dets) - MAX_PER_FRAME)
            dets = sorted(dets, key=lambda d: -d.confidence)[:MAX_PER_FRAME]
        xyxy = np.array([d.box for d in dets], dtype=np.float32).reshape(-1, 4)
        grow = (xyxy[:, 2:] - xyxy[:, :2]) * (PAD / 2)
        xyxy = np.hstack([xyxy[:, :2] - grow, xyxy[:, 2:] + grow])  # for matching; events keep the boxes found
        found = cam.tracker.update_with_detections(sv.Detections(
            xyxy=xyxy, confidence=np.array([d.confidence for d in dets], dtype=np.float32),
            class_id=np.zeros(len(dets), dtype=int), data={"i": np.arange(len(dets))}))
        out: list[Out] = []
        for track_id, i in zip(found.tracker_id.tolist(), found.data.get("i", np.array([])).tolist()):
            obj = self._seen(name, cam, int(track_id), dets[int(i)], r, pixels, areas)
            if obj is None:
                continue
            self._moving(cam, obj, r, rule.stationary_after_s)
            if obj.object_id is None:
                out += self._maybe_start(name, cam, obj, rule, r)
            elif obj.stationary and "stationary" not in obj.changes:
                continue  # still where it stopped: nothing to tell until it moves
            elif obj.changes & NOTABLE or (obj.changes and r.ts_ns - obj.last_event_ns >= self.update_every_ns):
                out.append(self._event(name, obj, "update", r.ts_ns))
        gone = [o for o in cam.objects.values() if r.ts_ns - o.last_seen_ns >= self._gone_after_ns(o, r)]
        return out + self._end(name, cam, gone, r.ts_ns)

    def _gone_after_ns(self, obj: TrackedObject, r: wire.Result) -> float:
        """How long unseen before ``obj`` ends: longer when it stands still, shorter when it was
        last seen walking out through an edge of the picture (a walker coming in there a moment
        later is someone else, not this one back)."""
        if obj.stationary or obj.fixed:
            return self.gone_ns * STATIONARY_GONE
        if _leaving(obj, r.width, r.height):
            return min(self.gone_ns, EXIT_S * 1e9)
        return self.gone_ns

    def _moving(self, cam: CameraTracks, obj: TrackedObject, r: wire.Result, stationary_after_s: float) -> None:
        """Has the object moved from where it last moved, or stood still long enough to be stationary?"""
        if obj.hits == 1:
            obj.anchor, obj.anchor_ns = obj.box, r.ts_ns
            return
        if _iou(obj.anchor, obj.box) < MOVED_IOU:
            obj.anchor, obj.anchor_ns, obj.moved = obj.box, r.ts_ns, True
            cam.walked.setdefault(obj.label, set()).add(_place(obj.box, r.width, r.height))
            if obj.stationary:
                obj.stationary = False
                obj.changes.add("active")
            obj.fixed = False
        elif (stationary_after_s > 0 and not obj.stationary and obj.object_id is not None
              and r.ts_ns - obj.anchor_ns >= stationary_after_s * 1e9):
            obj.stationary = True
            obj.changes.add("stationary")
            obj.changes.discard("active")

    def _maybe_start(self, name: str, cam: CameraTracks, obj: TrackedObject, rule, r: wire.Result) -> list[Out]:
        """The object's start when it is sure, in the rule's zones, and not held as still; a
        ``suggested_mask`` when it turns out fixed; else nothing yet."""
        if obj.fixed or not rule.filter(obj.label).sure(obj.scores):
            return []
        if rule.zones is not None and not any(z in rule.zones for z in obj.zones):
            return []
        if (rule.stationary_after_s > 0 and not obj.moved
                and _place(obj.box, r.width, r.height) not in cam.walked.get(obj.label, ())):
            if r.ts_ns - obj.anchor_ns < rule.stationary_after_s * 1e9:
                return []  # not moved yet, where nothing of its label ever moved: wait and see
            obj.fixed = True  # counted suppressed/<camera>/fixed at its end
            if any(label == obj.label and _iou(box, obj.anchor) >= MOVED_IOU for label, box in cam.fixed):
                return []  # this place was told already
            cam.fixed = (cam.fixed + [(obj.label, obj.anchor)])[-MAX_FIXED:]
            self.counters.add("events", "suggested_mask")
            event = wire.Event(id=self.ids(r.ts_ns, name, "suggested_mask"), type="suggested_mask", camera=name,
                               ts=r.ts_ns / 1e9, seq=obj.seq, worker=obj.worker, detector=obj.detector,
                               label=obj.label, score=obj.score, top_score=obj.top_score,
                               first_seen=obj.first_seen_ns / 1e9, last_seen=obj.last_seen_ns / 1e9,
                               box=obj.anchor, stationary=True,
                               reason=f"a {obj.label} that has not moved since first seen, where no "
                                      f"{obj.label} ever moved: mask it if it is not one")
            return [(event, obj.best)]
        return [self._event(name, obj, "start", r.ts_ns)]

    def _seen(self, name: str, cam: CameraTracks, track_id: int, det: wire.Detection, r: wire.Result,
              pixels: Pixels | None, areas: Areas | None) -> TrackedObject | None:
        obj = cam.objects.get(track_id)
        if obj is None and (obj := _lost_near(cam, det, r.ts_ns)) is not None:
            # ByteTrack lost it for a frame or two (people crossing, an occlusion) and started a new
            # track where it was: the same object goes on, under the new track id
            del cam.objects[obj.track_id]
            obj.track_id = track_id
            cam.objects[track_id] = obj
            self.counters.add("relinked", name)
        if obj is None:
            if len(cam.objects) >= MAX_OBJECTS:
                self.counters.add("suppressed", name, "too_many")
                return None
            obj = cam.objects[track_id] = TrackedObject(track_id, r.ts_ns, r.ts_ns, det.box, det.confidence)
        obj.last_seen_ns = max(obj.last_seen_ns, r.ts_ns)
        obj.trail = (obj.trail + [((det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2)])[-TRAIL:]
        obj.box, obj.score, obj.hits = det.box, det.confidence, obj.hits + 1
        obj.worker, obj.detector, obj.seq = r.worker, r.detector, r.seq
        obj.scores = (obj.scores + [det.confidence])[-SCORES_KEPT:]
        if det.confidence > obj.top_score:
            obj.top_score = det.confidence
            obj.changes.add("score")
        obj.label_sums[det.label] = obj.label_sums.get(det.label, 0.0) + det.confidence
        label = max(obj.label_sums, key=obj.label_sums.__getitem__)
        if label != obj.label:
            if obj.label:
                obj.changes.add("label")
            obj.label = label
        if areas is not None and areas.zones:
            new = [z for z in zones_of(det.box, areas.zones, r.width, r.height) if z not in obj.zones]
            if new:
                obj.zones = obj.zones + new
                obj.changes.add("zones")
        if self.sightings is not None and pixels is not None:
            self.sightings.append((obj, r.seq, pixels))
        rank = (not _cut(det.box, r.width, r.height), det.confidence)
        if pixels is not None and rank > obj.best_rank:
            # at the source's resolution where the extractor kept it (sink.source_frames): copied
            # now, while it is there, and only for an object's best frames
            best = pixels.at_source() if isinstance(pixels, Pixels) else pixels
            obj.best, obj.best_rank = Snapshot(best, det.box, (r.width, r.height), det.label), rank
            obj.best_new = True
            if (rank[0] and not obj.told_rank[0]) or rank[1] >= obj.told_rank[1] + SNAPSHOT_BETTER:
                obj.changes.add("snapshot")
            else:
                obj.changes.add("score")  # a better picture, not worth telling: goes with the next update
        return obj

    def _end(self, name: str, cam: CameraTracks, objs: list[TrackedObject], ts_ns: int) -> list[Out]:
        out: list[Out] = []
        for obj in objs:
            del cam.objects[obj.track_id]
            if obj.object_id is None:  # never sure enough, in the rule's zones, or moving
                self.counters.add("suppressed", name, self._why_unstarted(name, obj))
                if self.sightings is not None:
                    self.unstarted.append(obj)
                continue
            out.append(self._event(name, obj, "end", max(ts_ns, obj.last_event_ns)))
        return out

    def _why_unstarted(self, camera: str, obj: TrackedObject) -> str:
        """The reason an object ended before its start, as counted under ``suppressed``."""
        rule = self.rules.for_camera(camera)
        filt = rule.filter(obj.label)
        if obj.fixed:
            return "fixed"
        if obj.hits < filt.min_frames:
            return "min_frames"
        if not filt.sure(obj.scores):
            return "threshold"
        return "zones" if rule.zones is not None and not any(z in rule.zones for z in obj.zones) else "still"

    def _event(self, camera: str, obj: TrackedObject, phase: str, ts_ns: int) -> Out:
        event_id = self.ids(ts_ns, camera, "object")
        if obj.object_id is None:
            obj.object_id = event_id
        snap = obj.best if obj.best_new else None
        changes = sorted(obj.changes) if phase == "update" else []
        if phase == "start" or "snapshot" in obj.changes:
            obj.told_rank = obj.best_rank
        obj.best_new, obj.changes = False, set()
        obj.last_event_ns = ts_ns
        self.counters.add("objects", camera, phase)
        self.counters.add("events", "object")
        event = wire.Event(id=event_id, type="object", camera=camera, ts=ts_ns / 1e9, seq=obj.seq,
                           snapshot=obj.snapshot_path, worker=obj.worker, detector=obj.detector,
                           object_id=obj.object_id, phase=phase, label=obj.label, score=obj.score,
                           top_score=obj.top_score, first_seen=obj.first_seen_ns / 1e9,
                           last_seen=obj.last_seen_ns / 1e9, box=obj.box, zones=list(obj.zones),
                           stationary=obj.stationary, changes=changes)
        return event, snap


def _lost_near(cam: CameraTracks, det: wire.Detection, ts_ns: int) -> TrackedObject | None:
    """A live object of the detection's label, not seen in this frame, whose last box is within
    RELINK boxes of the detection's (centre to centre, in its own size): the nearest, or None."""
    x1, y1, x2, y2 = det.box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    best, best_d = None, RELINK
    for obj in cam.objects.values():
        if obj.last_seen_ns >= ts_ns or obj.label_sums.get(det.label, 0.0) <= 0.0:
            continue
        ox1, oy1, ox2, oy2 = obj.box
        size = max(ox2 - ox1, oy2 - oy1, 1.0)
        d = (((ox1 + ox2) / 2 - cx) ** 2 + ((oy1 + oy2) / 2 - cy) ** 2) ** 0.5 / size
        if d < best_d:
            best, best_d = obj, d
    return best


def _leaving(obj: TrackedObject, width: int, height: int) -> bool:
    """Was the object last seen at an edge of the picture, going towards it?"""
    if len(obj.trail) < 2:
        return False
    (x0, y0), (x1, y1) = obj.trail[0], obj.trail[-1]
    bx1, by1, bx2, by2 = obj.box
    mx, my = width * EXIT_MARGIN, height * EXIT_MARGIN
    return ((bx1 <= mx and x1 < x0) or (bx2 >= width - mx and x1 > x0)
            or (by1 <= my and y1 < y0) or (by2 >= height - my and y1 > y0))


def _iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _place(box: Box, width: int, height: int) -> tuple[int, int]:
    """The PLACES cell the box stands in (its bottom-centre)."""
    x, y = bottom_centre(box)
    cols, rows = PLACES
    return (min(cols - 1, max(0, int(x * cols / max(1, width)))), min(rows - 1, max(0, int(y * rows / max(1, height)))))


def _masked(box: Box, masks: tuple[Polygon, ...], width: int, height: int) -> bool:
    x, y = bottom_centre(box)
    return any(contains(m.points(width, height), x, y) for m in masks)


def _cut(box: Box, width: int, height: int) -> bool:
    """Does the box touch the frame's edge (the object goes on outside the picture)?"""
    mx, my = max(1.0, width * EDGE), max(1.0, height * EDGE)
    x1, y1, x2, y2 = box
    return x1 <= mx or y1 <= my or x2 >= width - mx or y2 >= height - my
