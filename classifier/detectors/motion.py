"""``motion``: background difference that ignores what is not motion.

- sensor noise: the frame is downscaled (averaging pixels) and blurred before differencing;
- flicker and exposure changes: the median difference over the frame is taken off every pixel,
  so a light that dims the whole scene moves nothing;
- small vibrations: thin edge slivers from a shaking camera are removed by a morphological
  opening, and a blob must cover ``min_area`` of the frame to count.

The background is per camera and per worker (each worker sees only the frames it is given).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from classifier.detectors import Detection, Frame, FrameResult
from classifier.detectors.imaging import small_gray


class MotionDetector:
    name = "motion"

    def __init__(self, width: float = 320, threshold: float = 25, min_area: float = 0.003,
                 alpha: float = 0.1) -> None:
        self.width, self.threshold, self.min_area, self.alpha = int(width), threshold, min_area, alpha
        self._background: dict[str, np.ndarray] = {}
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def detect(self, frames: Sequence[Frame]) -> list[FrameResult]:
        return [self._one(header.camera, image) for header, image in frames]

    def _one(self, camera: str, image: np.ndarray) -> FrameResult:
        small, scale = small_gray(image, self.width)
        small = cv2.GaussianBlur(small, (5, 5), 0).astype(np.float32)
        background = self._background.get(camera)
        if background is None or background.shape != small.shape:
            self._background[camera] = small
            return FrameResult()
        diff = small - background
        diff -= np.median(diff)  # a global brightness change is not motion
        mask = (np.abs(diff) > self.threshold).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        mask = cv2.dilate(mask, self._kernel, iterations=2)
        cv2.accumulateWeighted(small, background, self.alpha)
        min_pixels = self.min_area * mask.size
        detections = []
        n, _labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for x, y, w, h, area in stats[1:n]:
            if area < min_pixels:
                continue
            confidence = min(1.0, area / (w * h))
            detections.append(Detection("motion", confidence,
                                        (x * scale, y * scale, (x + w) * scale, (y + h) * scale)))
        return FrameResult(detections=detections)
