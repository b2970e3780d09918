"""Small image helpers the built-in detectors share."""

from __future__ import annotations

import cv2
import numpy as np


def small_gray(image: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """Grayscale copy at most ``width`` wide; returns it and the factor back to source pixels."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    if w <= width:
        return gray, 1.0
    scale = w / width
    return cv2.resize(gray, (width, max(1, round(h / scale))), interpolation=cv2.INTER_AREA), scale
