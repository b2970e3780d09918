"""SSD pre- and post-processing (TensorFlow object-detection exports), numpy and OpenCV only.

The family: one uint8 input ``[N, H, W, 3]`` (RGB), and two outputs with no NMS inside:
``[N, A, C]`` per-class sigmoid scores, and ``[N, A, 1, 4]`` boxes as normalised ``ymin, xmin,
ymax, xmax`` of the input image. Score column ``j`` is COCO category id ``j + 1`` (the 90-id map,
with gaps where COCO dropped a category).

Pre-processing (:func:`prepare`): every frame is resized (stretched, as the model was trained) to
one input size, so frames of different sizes share a batch; BGR -> RGB. Post-processing
(:func:`decode`): the best class per anchor, the confidence threshold and class filter, then
class-aware NMS and the row limit (:func:`classifier.detectors.yolo.keep`); the normalised boxes
become pixels of each frame's own size.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import cv2
import numpy as np

from camwire.classifier.detectors.yolo import Thresholds, keep

DEFAULT_SIZE = (300, 300)  # (W, H): what this family is trained at (its graph resizes to it anyway)

# COCO category ids as the TensorFlow model zoo numbers them; the missing ids (12, 26, 29, 30, 45,
# 66, 68, 69, 71, 83) were never annotated. Names as Ultralytics spells them, so one rule's
# labels fit a YOLO model and an SSD alike.
COCO90 = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
    24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle",
    46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut",
    61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet",
    72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
    79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
    87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}


# the 80 categories in id order, as models trained on contiguous COCO classes (YOLO, YOLOX) number them
COCO80 = tuple(COCO90[k] for k in sorted(COCO90))


def coco_labels(columns: int) -> list[str]:
    """Names of score columns ``0..columns-1``: column j is category j + 1; a gap is its id."""
    return [COCO90.get(j + 1, str(j + 1)) for j in range(columns)]


class Outputs(NamedTuple):
    scores: str  # output names
    boxes: str
    classes: int  # score columns (the COCO-90 map's size when the model leaves it open)


def find_outputs(inputs: Sequence[Any], outputs: Sequence[Any]) -> Outputs | None:
    """The outputs when an ONNX Runtime session's inputs and outputs (``NodeArg``) are this
    family's, else None."""
    if len(inputs) != 1 or len(outputs) != 2:
        return None
    shape = inputs[0].shape
    if inputs[0].type != "tensor(uint8)" or len(shape) != 4 or shape[3] != 3:
        return None
    by_rank = {len(o.shape): o for o in outputs}
    if set(by_rank) != {3, 4} or list(by_rank[4].shape[2:]) != [1, 4]:
        return None
    anchors = by_rank[3].shape[1], by_rank[4].shape[1]
    if all(isinstance(a, int) for a in anchors) and anchors[0] != anchors[1]:
        return None
    classes = by_rank[3].shape[2]
    return Outputs(by_rank[3].name, by_rank[4].name, classes if isinstance(classes, int) else len(COCO90))


def input_size(shape: Sequence[Any]) -> tuple[int, int]:
    """(W, H) of an ``[N, H, W, 3]`` input: its own when fixed, else the family's 300x300."""
    if isinstance(shape[1], int) and isinstance(shape[2], int):
        return shape[2], shape[1]
    return DEFAULT_SIZE


def prepare(image: np.ndarray, size: tuple[int, int], rgb: bool = False) -> np.ndarray:
    """A BGR (or BGRA, or grey; ``rgb``: RGB, the model's own order) frame -> ``[H, W, 3]`` uint8
    RGB of ``size`` (W, H)."""
    if image.shape[1::-1] != size:
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return image[:, :, :3] if rgb else image[:, :, 2::-1]


def decode(scores: np.ndarray, boxes: np.ndarray, frame_sizes: Sequence[tuple[int, int]],
           thresholds: Thresholds) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``scores [N, A, C]``, ``boxes [N, A, 1, 4]`` and each frame's (W, H) -> per frame ``(boxes [K, 4]
    x1, y1, x2, y2 in that frame's pixels, clipped to it, scores [K], class ids [K])``."""
    out = []
    for frame_scores, frame_boxes, (w, h) in zip(scores, boxes, frame_sizes):
        class_ids = frame_scores.argmax(axis=1)
        best = frame_scores[np.arange(len(frame_scores)), class_ids]
        yxyx = frame_boxes.reshape(-1, 4).clip(0.0, 1.0)
        xyxy = yxyx[:, [1, 0, 3, 2]] * np.array([w, h, w, h], np.float32)
        out.append(keep(xyxy, best, class_ids, thresholds, nms=True))
    return out
