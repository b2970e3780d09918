"""How well sink.tracking holds people on ``people-walking.mp4``: objects per hand-counted crossing.

The detector runs once per model over the clip's frames sampled at ``--fps`` (in this process,
with the worker's own detector code; detections are cached under ``--cache`` by model, clip and
rate, so a second run replays at once); then the detections are replayed through
sink.tracking.Tracking with the camera's rule (common.rules: its labels, filters, stationary
objects) exactly as the sink tracks them. That makes tracker changes measurable in seconds; the
end-to-end figures (real daemons, MQTT) are bench/events.py's.

Reported per model: person objects started (``objects``) against the crossings counted by hand
(``bench/people-walking.crossings.csv``); ``ends_inside`` (an object's first or last box inside the
picture, away from the clip's start and end: a crossing in pieces or a swap); ``merged`` (objects
whose time span fits no single crossing: two walkers in one object, so a swap); ``jumps`` (a box
that leapt more than JUMP of its size between sampled frames); ``--crops`` writes a sheet of each
person object's crops, to check swaps by eye (what BENCHMARKS.md reports); ``post`` (objects started on the black-signed post, top left, that the
built-in model takes for a person: bench.events.on_post) and ``suggested_mask`` events;
object events by phase and the updates worth telling (``changes`` besides ``score``).

Run: ``.venv/bin/python bench/tracks.py [--models builtin ssd] [--fps 5] [--rule 'min_frames = 3' ...]``.
``--rule`` lines are TOML for the camera's ``[rules]`` table, to try settings side by side.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tomllib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

from camwire.common import wire  # noqa: E402
from camwire.common.rules import Rules, parse_rule  # noqa: E402
from camwire.sink.tracking import Tracking  # noqa: E402
from bench.events import inside, on_post  # noqa: E402

SHARED = ROOT.parent / "shared"
CLIP = SHARED / "media" / "people-walking.mp4"
MODELS = {"builtin": "onnx", "ssd": f"onnx:{SHARED / 'models' / 'coco-ssd-mobilenetv2.onnx'}"}
CONFIDENCE = 0.25  # the worker's floor: the rule's filters decide above it
JUMP = 0.6  # box sizes a walker's box cannot move between two sampled frames
CAMERA = "cam"


def detections(model: str, fps: float, cache: Path) -> tuple[list[tuple[int, float, list]], tuple[int, int]]:
    """[(seq, seconds into the clip, [(label, score, box)])] at ``fps``, and the frame size; cached."""
    path = cache / f"{CLIP.stem}-{model}-{fps:g}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return [tuple(f) for f in data["frames"]], tuple(data["size"])
    from camwire.classifier.detectors import make_detector

    detector = make_detector(MODELS[model], {"confidence": CONFIDENCE})
    frames, size, slot = [], (0, 0), -1
    with av.open(str(CLIP)) as container:
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            t = float(frame.time or 0.0)
            if int(t * fps) == slot:
                continue
            slot = int(t * fps)
            image = frame.to_ndarray(format="bgr24")
            size = (image.shape[1], image.shape[0])
            header = wire.FrameHeader(camera=CAMERA, seq=i, ts_ns=int(t * 1e9), width=size[0], height=size[1])
            found = detector.detect([(header, np.ascontiguousarray(image))])[0]
            frames.append((i, t, [(d.label, round(d.confidence, 4), [round(v, 1) for v in d.box])
                                  for d in found.detections]))
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"frames": frames, "size": size}))
    return frames, size


def crossings(duration: float) -> list[tuple[float, float]]:
    lines = [ln for ln in (ROOT / "bench" / f"{CLIP.stem}.crossings.csv").read_text().splitlines()
             if ln and not ln.startswith("#")]
    return [(float(r["enter_s"]), duration if r["exit_s"] == "end" else float(r["exit_s"])) for r in csv.DictReader(lines)]


class Recorded(Tracking):
    """Tracking that also keeps every object's boxes by seq (for the crops of ``--crops``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.boxes: dict[int, list[tuple[int, tuple]]] = defaultdict(list)  # id(TrackedObject) -> [(seq, box)]
        self.objects: dict[int, Any] = {}

    def _seen(self, name, cam, track_id, det, r, pixels, areas):
        obj = super()._seen(name, cam, track_id, det, r, pixels, areas)
        if obj is not None:
            self.boxes[id(obj)].append((r.seq, det.box))
            self.objects[id(obj)] = obj
        return obj


def replay(frames: list, size: tuple[int, int], rule_toml: str) -> tuple[list[wire.Event], Recorded]:
    rule = parse_rule(tomllib.loads(rule_toml), "rules")
    n = iter(range(1 << 30))
    tracking = Recorded(lambda ts, cam, kind: f"{kind}-{next(n)}", Rules(rule, {}))
    events: list[wire.Event] = []
    prev = -1
    for seq, t, dets in frames:
        r = wire.Result(camera=CAMERA, seq=seq, ts_ns=int(t * 1e9), width=size[0], height=size[1],
                        worker="w", detector="d", prev=prev,
                        detections=[wire.Detection(label, score, tuple(box)) for label, score, box in dets])
        prev = seq
        events += [e for e, _snap in tracking.on_result(r, None, 0.0)]
    events += [e for e, _snap in tracking.finish(CAMERA)]
    return events, tracking


def frames_at(seqs: set[int]) -> dict[int, np.ndarray]:
    images: dict[int, np.ndarray] = {}
    with av.open(str(CLIP)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in seqs:
                images[i] = frame.to_ndarray(format="bgr24")
    return images


def crops(tracking: Recorded, out: Path, model: str, per_row: int = 8, side: int = 96) -> Path:
    """One row per started person object: ``per_row`` crops spread over its sightings, first to
    last, to check by eye that each row is one person (an identity swap shows as a change of clothes)."""
    import cv2

    rows = [(obj, tracking.boxes[key]) for key, obj in tracking.objects.items()
            if obj.object_id is not None and obj.label == "person"]
    rows.sort(key=lambda row: row[0].first_seen_ns)
    images = frames_at({seq for _obj, seen in rows for seq, _box in _spread(seen, per_row)})
    sheet = np.zeros((len(rows) * side, (per_row + 1) * side, 3), np.uint8)
    for r, (obj, seen) in enumerate(rows):
        cv2.putText(sheet, f"{obj.first_seen_ns / 1e9:.0f}-{obj.last_seen_ns / 1e9:.0f}", (2, r * side + side // 2),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        for c, (seq, box) in enumerate(_spread(seen, per_row)):
            x1, y1, x2, y2 = (int(v) for v in box)
            pad = max(x2 - x1, y2 - y1) // 3
            crop = images[seq][max(0, y1 - pad):y2 + pad, max(0, x1 - pad):x2 + pad]
            scale = side / max(crop.shape[:2])
            crop = cv2.resize(crop, (max(1, int(crop.shape[1] * scale)), max(1, int(crop.shape[0] * scale))))
            sheet[r * side:r * side + crop.shape[0], (c + 1) * side:(c + 1) * side + crop.shape[1]] = crop
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{CLIP.stem}-{model}-objects.png"
    cv2.imwrite(str(path), sheet)
    return path


def _spread(seen: list, n: int) -> list:
    if len(seen) <= n:
        return seen
    return [seen[round(i * (len(seen) - 1) / (n - 1))] for i in range(n)]


def jumps(tracking: Recorded, step: int) -> int:
    """Sightings of a started person object whose box centre is more than JUMP of its size from
    the one before, per sampled frame between them: a box that leapt to another walker (a swap)."""
    n = 0
    for key, obj in tracking.objects.items():
        if obj.object_id is None or obj.label != "person":
            continue
        seen = tracking.boxes[key]
        for (s0, a), (s1, b) in zip(seen, seen[1:]):
            size = max(a[2] - a[0], a[3] - a[1], 1.0)
            d = (((a[0] + a[2]) - (b[0] + b[2])) ** 2 + ((a[1] + a[3]) - (b[1] + b[3])) ** 2) ** 0.5 / 2 / size
            n += d > JUMP * max(1, round((s1 - s0) / step))
    return n


def figures(events: list[wire.Event], size: tuple[int, int], duration: float, fps: float) -> dict[str, Any]:
    chains: dict[str, list[wire.Event]] = defaultdict(list)
    for e in events:
        if e.type == "object":
            chains[e.object_id].append(e)
    people = {oid: evs for oid, evs in chains.items() if evs[-1].label == "person"}
    slack = 2.0 / fps
    ends_inside = 0
    for evs in people.values():
        first, last = evs[0], evs[-1]
        ends_inside += (last.first_seen > slack and inside(first.box, size)) + \
                       (last.last_seen < duration - slack and inside(last.box, size))
    cross = crossings(duration)
    spans = [(evs[-1].first_seen, evs[-1].last_seen) for evs in people.values()]
    # an object longer than any crossing it could be: two walkers or more (a swap), whatever else it did
    merged = sum(1 for first, last in spans if not any(a - 1.0 <= first and last <= b + 1.0 for a, b in cross))
    post = sum(1 for evs in people.values() if all(on_post(e.box) for e in evs))
    phases = Counter(e.phase for e in events if e.type == "object")
    told = sum(1 for e in events if e.phase == "update" and set(e.changes) - {"score"})
    return {"objects": len(people), "other_objects": dict(Counter(evs[-1].label for evs in chains.values()
                                                                  if evs[-1].label != "person")),
            "crossings": len(cross), "merged": merged,
            "ends_inside": ends_inside, "post": post,
            "suggested_mask": sum(1 for e in events if e.type == "suggested_mask"),
            "phases": dict(phases), "updates_told": told,
            "stationary": sum(1 for e in events if e.phase == "update" and "stationary" in e.changes)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--rule", action="append", default=None, help="a [rules] table in TOML (repeatable: side by side)")
    ap.add_argument("--cache", default="/tmp/camwire-bench-tracks", help="where detections are cached")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a sink.tracking constant for this run (PAD=0.3): to try tracker settings")
    ap.add_argument("--list", action="store_true", help="print each person object's span")
    ap.add_argument("--crops", metavar="DIR", help="write a sheet of each person object's crops here (swaps by eye)")
    args = ap.parse_args()
    if not CLIP.is_file():
        print(f"skipped: no clip at {CLIP}")
        return 0
    import camwire.sink.tracking as tracking_module

    for item in args.set:
        name, value = item.split("=", 1)
        setattr(tracking_module, name, type(getattr(tracking_module, name))(float(value)))
    with av.open(str(CLIP)) as c:
        duration = c.streams.video[0].frames / float(c.streams.video[0].average_rate)
    for model in args.models:
        frames, size = detections(model, args.fps, Path(args.cache))
        for rule in args.rule or [""]:
            events, tracking = replay(frames, size, rule)
            if args.crops:
                print(f"  crops: {crops(tracking, Path(args.crops), model)}")
            step = max(1, round(frames[1][0] - frames[0][0])) if len(frames) > 1 else 1
            print(json.dumps({"model": model, "rule": rule, **figures(events, size, duration, args.fps),
                              "jumps": jumps(tracking, step)}))
            if args.list:
                for e in events:
                    if e.type == "object" and e.phase == "end" or e.type == "suggested_mask":
                        print(f"  {e.type} {e.label} {e.first_seen:.1f}-{e.last_seen:.1f} "
                              f"box={[round(v) for v in e.box]} top={e.top_score:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
