"""``hog``: OpenCV's built-in HOG + linear SVM people detector (no model file needed)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from camwire.classifier.detectors import Detection, Frame, FrameResult


class HogPeopleDetector:
    name = "hog"
    # the gradient's largest channel (colour) or the grey level: either order, or grey, as it comes;
    # YUV 4:2:0 as grey (its Y plane, for free)
    formats = ("gray", "bgr", "rgb")

    def __init__(self, width: float = 640, threshold: float = 0.5, nms: float = 0.45) -> None:
        self.width, self.threshold, self.nms = int(width), threshold, nms
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, frames: Sequence[Frame]) -> list[FrameResult]:
        return [self._one(image) for _header, image in frames]

    def _one(self, image: np.ndarray) -> FrameResult:
        h, w = image.shape[:2]
        scale = max(1.0, w / self.width)
        small = image if scale == 1.0 else cv2.resize(image, (round(w / scale), round(h / scale)),
                                                       interpolation=cv2.INTER_AREA)
        rects, weights = self._hog.detectMultiScale(small, winStride=(8, 8), padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return FrameResult()
        # SVM margins are unbounded; squash them into (0, 1) so thresholds mean the same everywhere
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, dtype=np.float64).ravel()))
        keep = cv2.dnn.NMSBoxes([list(map(int, r)) for r in rects], scores.tolist(), self.threshold, self.nms)
        detections = []
        for i in np.asarray(keep).ravel():
            x, y, bw, bh = rects[i]
            detections.append(Detection("person", float(scores[i]),
                                        (x * scale, y * scale, (x + bw) * scale, (y + bh) * scale)))
        return FrameResult(detections=detections)
