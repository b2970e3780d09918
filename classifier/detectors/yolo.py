"""YOLO-family pre- and post-processing, vectorised with numpy; no model runtime here.

Pre-processing (:func:`letterbox`): scale a BGR frame to fit the model's input keeping its aspect,
pad the rest with grey (114) centred, BGR -> RGB, CHW, float32 in [0, 1]; for YOLOX
(``yolox=True``) as its exports expect instead: the frame in the top-left corner, BGR, 0-255.

Post-processing (:func:`decode`) understands the common ONNX output layouts:

- ``v8``: ``[N, 4 + C, A]`` (YOLOv8/YOLO11): box centre x, y, width, height, then C class scores;
- ``v5``: ``[N, A, 5 + C]`` (YOLOv5/v7): box, objectness, C class scores (score = obj * class);
- ``nms``: ``[N, K, 6]`` exported with NMS inside: x1, y1, x2, y2, score, class;
- ``nms7``: ``[K, 7]`` (end-to-end exports): batch index, x1, y1, x2, y2, class, score;
- ``yolox``: ``[N, A, 5 + C]`` with the raw head (YOLOX exports, camwire's built-in model): one
  row per cell of the stride 8, 16 and 32 grids over the input, in that order, row-major; centre
  ``(c0 + gx) * stride``, ``(c1 + gy) * stride``, size ``exp(c2..3) * stride``; objectness and
  class scores already sigmoid (score = obj * class). Told from ``v5`` (3 anchors a cell) by its
  row count: one row a cell of the model's input size.

then keeps boxes at or above the confidence threshold and in the class filter, runs class-aware
NMS (OpenCV's ``NMSBoxesBatched``) unless the model already did, and maps boxes back to source
pixels through the letterbox.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

LAYOUTS = ("v8", "v5", "nms", "nms7", "yolox")
YOLOX_STRIDES = (8, 16, 32)
PAD_VALUE = 114


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a source frame was fitted into the model input: ``model = source * scale + pad``."""

    scale: float
    pad_x: float
    pad_y: float
    width: int  # source size, for clipping
    height: int

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """``[K, 4]`` x1, y1, x2, y2 in model pixels -> source pixels, clipped to the frame."""
        out = (boxes - np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)) / self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out


def letterbox(image: np.ndarray, size: tuple[int, int], yolox: bool = False,
              rgb: bool = False) -> tuple[np.ndarray, Letterbox]:
    """A BGR (``rgb``: RGB; or grey) frame -> ``[3, H, W]`` float32 input of ``size`` (W, H), and the
    mapping: centred, RGB in [0, 1]; with ``yolox``, in the top-left corner, BGR in 0-255."""
    in_w, in_h = size
    h, w = image.shape[:2]
    scale = min(in_w / w, in_h / h)
    new_w, new_h = round(w * scale), round(h * scale)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if (new_w, new_h) != (w, h) else image
    pad_x, pad_y = ((0.0, 0.0) if yolox else ((in_w - new_w) / 2, (in_h - new_h) / 2))
    left, top = int(round(pad_x - 0.1)) if pad_x else 0, int(round(pad_y - 0.1)) if pad_y else 0
    canvas = np.full((in_h, in_w, 3), PAD_VALUE, np.uint8)
    canvas[top:top + new_h, left:left + new_w] = resized[:, :, :3]
    if yolox != rgb:  # the frame's order is the model's (YOLOX: BGR, the others RGB)
        tensor = canvas.transpose(2, 0, 1).astype(np.float32)
    else:
        tensor = canvas[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)
    if not yolox:
        tensor /= 255.0
    return tensor, Letterbox(scale, float(left), float(top), w, h)


def yolox_cells(size: tuple[int, int]) -> int:
    """Rows a YOLOX head has for an input of ``size`` (W, H): one per cell of its three grids."""
    return sum((size[0] // s) * (size[1] // s) for s in YOLOX_STRIDES)


@functools.lru_cache(maxsize=8)
def yolox_grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's (grid x, grid y) and stride for an input of ``size`` (W, H), in the head's order."""
    cells, strides = [], []
    for stride in YOLOX_STRIDES:
        gw, gh = size[0] // stride, size[1] // stride
        ys, xs = np.mgrid[0:gh, 0:gw]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full(gw * gh, stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)[:, None]


def guess_layout(shape: tuple, classes: int | None, size: tuple[int, int] | None = None) -> str:
    """The layout of an output of this shape (``classes`` from the model's names, when known;
    ``size``: the model's input (W, H), which tells a YOLOX head by its row count)."""
    if len(shape) == 2 and shape[-1] == 7:
        return "nms7"
    if len(shape) != 3:
        raise ValueError(f"unknown YOLO output shape {shape}")
    d1, d2 = shape[1], shape[2]
    if size is not None and d1 == yolox_cells(size) and isinstance(d2, int) and d2 > 5 and d2 != 6:
        return "yolox"
    if classes:  # the class count settles it
        if d1 == 4 + classes:
            return "v8"
        if d2 == 5 + classes:
            return "v5"
        if d2 == 6:
            return "nms"
    if isinstance(d1, int) and isinstance(d2, int) and d1 < d2:
        return "v8"  # [N, 4+C, anchors]: anchors are always the larger
    if d2 == 6 and classes != 1:
        return "nms"
    return "v5"


@dataclass(frozen=True, slots=True)
class Thresholds:
    confidence: float = 0.25
    iou: float = 0.45
    max_detections: int = 300
    classes: frozenset[int] | None = None  # class ids kept; None keeps every class


def decode(output: np.ndarray, layout: str, thresholds: Thresholds,
           size: tuple[int, int] | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One model output -> per image ``(boxes [K, 4] xyxy in model pixels, scores [K], class ids [K])``;
    ``size`` (the input's W, H): YOLOX's grids."""
    if layout == "nms7":
        images = int(output[:, 0].max()) + 1 if len(output) else 0
        rows = [output[output[:, 0] == i] for i in range(images)]
        return [keep(r[:, 1:5], r[:, 6], r[:, 5].astype(np.int64), thresholds, nms=False) for r in rows]
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for pred in output:
        if layout == "nms":
            out.append(keep(pred[:, :4], pred[:, 4], pred[:, 5].astype(np.int64), thresholds, nms=False))
            continue
        if layout == "v8":
            pred = pred.T  # [A, 4+C]
            cls_scores = pred[:, 4:]
        elif layout == "yolox":
            if size is None or len(pred) != yolox_cells(size):
                raise ValueError(f"a YOLOX head of {len(pred)} rows is not one of input {size}")
            cells, strides = yolox_grid(size)
            centre = (pred[:, :2] + cells) * strides
            wh = np.exp(np.minimum(pred[:, 2:4], 20.0)) * strides  # held below overflow: a garbage row stays finite
            pred = np.concatenate([centre, wh, pred[:, 4:]], axis=1)
            cls_scores = pred[:, 5:] * pred[:, 4:5]
        else:  # v5
            cls_scores = pred[:, 5:] * pred[:, 4:5]
        class_ids = cls_scores.argmax(axis=1)
        scores = cls_scores[np.arange(len(cls_scores)), class_ids]
        out.append(keep(_xywh_to_xyxy(pred[:, :4]), scores, class_ids, thresholds, nms=True))
    return out


def keep(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, t: Thresholds,
         nms: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates (xyxy boxes, scores, class ids) -> those at or above the confidence threshold and
    in the class filter, class-aware NMS when ``nms``, best first, at most ``max_detections``."""
    mask = scores >= t.confidence
    if t.classes is not None:
        mask &= np.isin(class_ids, list(t.classes))
    boxes, scores, class_ids = boxes[mask].astype(np.float32), scores[mask].astype(np.float32), class_ids[mask]
    if nms and len(boxes):
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        # the threshold is applied above (inclusive); OpenCV would apply it again, strictly
        kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_ids.tolist(), 0.0, t.iou)
        kept = np.asarray(kept, dtype=np.int64).reshape(-1)
        boxes, scores, class_ids = boxes[kept], scores[kept], class_ids[kept]
    order = np.argsort(-scores, kind="stable")[: t.max_detections]
    return boxes[order], scores[order], class_ids[order]


def _xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)
