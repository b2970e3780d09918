"""Small image helpers the built-in detectors share."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def is_rgb(header: Any) -> bool:
    """Whether a frame's pixels are in RGB order (its header says; a bare frame without one is BGR)."""
    return header is not None and header.format == "rgb"


def small_gray(image: np.ndarray, width: int, rgb: bool = False) -> tuple[np.ndarray, float]:
    """Grayscale copy at most ``width`` wide; returns it and the factor back to source pixels."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    if w <= width:
        return gray, 1.0
    scale = w / width
    return cv2.resize(gray, (width, max(1, round(h / scale))), interpolation=cv2.INTER_AREA), scale
