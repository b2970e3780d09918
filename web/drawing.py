"""What the live view draws on a frame (web.live): zones, motion boxes and detections, in colours a
person (and a test, by pixel) tells apart at a glance. Pure functions over numpy images."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from camwire.common import wire
from camwire.common.geometry import Polygon

# BGR; saturated, so that they stand out on a picture (and a test finds them by pixel)
DETECTION_COLOUR = (0, 255, 0)  # green
MOTION_COLOUR = (255, 0, 255)  # magenta
ZONE_COLOUR = (0, 255, 255)  # yellow


def draw(image: np.ndarray, scale: float, detections: Sequence[wire.Detection], zones: Mapping[str, Polygon],
         motion: Sequence[wire.Box], source_size: tuple[int, int]) -> None:
    """Draw zones (named outlines), motion boxes and detections (box + "label 0.87") onto ``image``,
    a picture ``scale`` times the source's size; coordinates are the source's pixels."""
    import cv2

    thick = 2 if image.shape[1] <= 960 else 3
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, image.shape[1] / 1600)
    for name, polygon in zones.items():
        pts = np.round(polygon.points(*source_size) * scale).astype(np.int32)
        cv2.polylines(image, [pts], True, ZONE_COLOUR, thick)
        x, y = pts.min(axis=0)
        cv2.putText(image, name, (int(x) + 4, int(y) + 16), font, font_scale, ZONE_COLOUR, 1, cv2.LINE_AA)
    for box in motion:
        x1, y1, x2, y2 = (round(v * scale) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), MOTION_COLOUR, thick)
    for d in detections:
        x1, y1, x2, y2 = (round(v * scale) for v in d.box)
        cv2.rectangle(image, (x1, y1), (x2, y2), DETECTION_COLOUR, thick)
        text = f"{d.label} {d.confidence:.2f}"
        (tw, th), base = cv2.getTextSize(text, font, font_scale, 1)
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1  # above the box, or inside it at the top
        cv2.rectangle(image, (x1, top), (x1 + tw + 4, top + th + base + 2), DETECTION_COLOUR, -1)
        cv2.putText(image, text, (x1 + 2, top + th + 1), font, font_scale, (0, 0, 0), 1, cv2.LINE_AA)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Any frame common.wire carries (grey, BGR, BGRA; 8 or 16 bits) as 8-bit BGR."""
    import cv2

    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.array(image)  # a writable copy: a raw frame is a read-only view of the received bytes
