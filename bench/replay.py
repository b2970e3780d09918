"""Tracker settings replayed on one clip's detections, without daemons: how whole are the objects?

The real COCO SSD (``../shared/models/coco-ssd-mobilenetv2.onnx``) runs once over every frame of
``../shared/media/people-walking.mp4`` (or ``--clip``), on the whole frame and on 2x2 overlapping
tiles plus the whole frame (each tile stretched to the model's input, boxes touching an inner
tile edge dropped, then one NMS). The person boxes are then fed, as the sink would get them, to
``sink.tracking`` under each setting of ``RELINK`` and ``PAD``, sampling every frame or
every other one. Per setting: objects seen 3 times or more, and their ends inside the picture
(first or last box clear of every edge by 5 % and not at the clip's start or end: a walker found
late or lost early). Skips, saying so, without the model or the clip.

Run: ``.venv/bin/python bench/replay.py [--clip NAME]`` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
MODEL = SHARED / "models" / "coco-ssd-mobilenetv2.onnx"
EDGE_SHARE = 0.05
SETTINGS = ((0.75, 0.5), (0.0, 0.5), (1.5, 0.5), (0.75, 0.0))  # (RELINK, PAD); the first is camwire's

from camwire.common.rules import Filter, Rule, Rules  # noqa: E402
from camwire.sink import tracking  # noqa: E402
from camwire.classifier.detectors import ssd  # noqa: E402
from camwire.classifier.detectors.onnx import OnnxDetector  # noqa: E402
from camwire.classifier.detectors.yolo import Thresholds, keep  # noqa: E402
from camwire.common import wire  # noqa: E402

Boxes = list[tuple[float, tuple[float, float, float, float]]]


def tiles(w: int, h: int, cols: int = 2, rows: int = 2, overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    tw, th = round(w / (cols - (cols - 1) * overlap)), round(h / (rows - (rows - 1) * overlap))
    xs = [round(i * (w - tw) / max(1, cols - 1)) for i in range(cols)]
    ys = [round(j * (h - th) / max(1, rows - 1)) for j in range(rows)]
    return [(x, y, x + tw, y + th) for y in ys for x in xs]


def tiled(det: OnnxDetector, image: np.ndarray) -> Boxes:
    """The SSD on 2x2 overlapping tiles and the whole frame, merged by one NMS."""
    h, w = image.shape[:2]
    rects = [*tiles(w, h), (0, 0, w, h)]
    batch = np.stack([ssd.prepare(image[y1:y2, x1:x2], det.size) for x1, y1, x2, y2 in rects])
    scores, boxes = det.session.run([det.ssd_outputs.scores, det.ssd_outputs.boxes], {det.input_name: batch})
    found = ssd.decode(scores, boxes, [(x2 - x1, y2 - y1) for x1, y1, x2, y2 in rects], det.thresholds)
    parts = []
    for (b, s, c), (x1, y1, x2, y2) in zip(found, rects):
        b = b + np.array([x1, y1, x1, y1], np.float32)
        cut = (((b[:, 0] <= x1 + 2) & (x1 > 0)) | ((b[:, 1] <= y1 + 2) & (y1 > 0))
               | ((b[:, 2] >= x2 - 2) & (x2 < w)) | ((b[:, 3] >= y2 - 2) & (y2 < h)))  # cut by an inner edge
        parts.append((b[~cut], s[~cut], c[~cut]))
    b, s, _c = keep(*(np.concatenate(p) for p in zip(*parts)), det.thresholds, nms=True)
    return [(float(v), tuple(map(float, x))) for x, v in zip(b, s)]


def replay(frames: list[Boxes], size: tuple[int, int], step: int, relink: float, pad: float) -> tuple[int, int]:
    """(objects seen 3 times or more, their ends inside the picture)."""
    tracking.RELINK, tracking.PAD = relink, pad
    ids = itertools.count()
    # every box the SSD gave, from its first frame, as when this bench was written (before the
    # default rule of issue 24: bench/tracks.py measures that one)
    everything = Rule(labels=None, base=Filter(min_confidence=0.0, threshold=0.0, min_frames=1), stationary_after_s=0.0)
    tracker = tracking.Tracking(lambda _ts, _cam, _type: f"o{next(ids)}", Rules(everything))
    seen: dict[int, tuple[tracking.TrackedObject, list]] = {}
    original = tracking.Tracking._seen

    def record(self, name, cam, track_id, det, r, jpeg, areas):  # every box each object takes, in order
        obj = original(self, name, cam, track_id, det, r, jpeg, areas)
        if obj is not None:
            seen.setdefault(id(obj), (obj, []))[1].append((r.seq, det.box))
        return obj

    tracking.Tracking._seen = record
    try:
        w, h = size
        picked = frames[::step]
        for seq, boxes in enumerate(picked):
            dets = [wire.Detection(label="person", confidence=round(min(1.0, c), 4), box=b) for c, b in boxes]
            tracker.on_result(wire.Result(camera="c", seq=seq, ts_ns=seq * step * 10**8 + 1, width=w, height=h,
                                          detections=dets, prev=seq - 1 if seq else None), b"jpeg", 0.0)
        tracker.finish("c")
    finally:
        tracking.Tracking._seen = original
    objects = [boxes for obj, boxes in seen.values() if obj.object_id and len(boxes) >= 3]
    last = len(picked) - 1

    def inside(box) -> bool:
        mx, my = w * EDGE_SHARE, h * EDGE_SHARE
        return box[0] > mx and box[1] > my and box[2] < w - mx and box[3] < h - my

    ends = sum((b[0][0] > 1 and inside(b[0][1])) + (b[-1][0] < last - 1 and inside(b[-1][1])) for b in objects)
    return len(objects), ends


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--clip", default="people-walking.mp4", help="a file in ../shared/media/")
    ap.add_argument("--confidence", type=float, default=0.5)
    args = ap.parse_args()
    clip = SHARED / "media" / args.clip
    if not MODEL.is_file() or not clip.is_file():
        print(f"skipped: no {MODEL if not MODEL.is_file() else clip}")
        return 0
    det = OnnxDetector(str(MODEL), thresholds=Thresholds(args.confidence), allowed=["person"])
    whole: list[Boxes] = []
    tiled_: list[Boxes] = []
    spent = {"whole": 0.0, "tiled": 0.0}
    with av.open(str(clip)) as c:
        size = (c.streams.video[0].width, c.streams.video[0].height)
        for frame in c.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            t = time.perf_counter()
            whole.append([(d.confidence, d.box) for d in det.detect([(None, image)])[0].detections])
            spent["whole"] += time.perf_counter() - t
            t = time.perf_counter()
            tiled_.append(tiled(det, image))
            spent["tiled"] += time.perf_counter() - t
    n = len(whole)
    print(f"# {args.clip}: {n} frames; person boxes a frame: whole {sum(map(len, whole)) / n:.2f}, "
          f"tiled {sum(map(len, tiled_)) / n:.2f}; SSD time tiled / whole {spent['tiled'] / spent['whole']:.1f}x")
    print("detector  sampled  " + "  ".join(f"RELINK {r} PAD {p}" for r, p in SETTINGS) + "   (objects, ends inside)")
    for name, frames in (("whole", whole), ("tiled", tiled_)):
        for step in (2, 1):
            cells = [replay(frames, size, step, r, p) for r, p in SETTINGS]
            print(f"{name:8}  every {step}  " + "  ".join(f"{o:>6}, {e:<10}" for o, e in cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
