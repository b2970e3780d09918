"""``covered``: is the lens covered or blinded?

A covered lens leaves little detail, but so do two things that are not tampering: a night scene
(mostly near-black) or a blown-out one (mostly near-white), and a dead stream (a perfectly uniform
picture from a decoder with nothing to show). A frame counts as covered only when detail is low
and it is none of those. The judgement is per frame; the sink fires ``camera_covered`` after
``frames`` consecutive covered frames of a camera, a number carried in the result's flags.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from classifier.detectors import Frame, FrameResult
from classifier.detectors.imaging import small_gray


def judge(gray: np.ndarray, edge_fraction_max: float = 0.004, dark_or_bright_max: float = 0.7,
          uniform_std: float = 1.5) -> dict[str, float | bool | str]:
    """Pure decision on a small grayscale frame; returns the verdict and the measures behind it."""
    std = float(gray.std())
    dark = float(np.count_nonzero(gray < 25)) / gray.size
    bright = float(np.count_nonzero(gray > 230)) / gray.size
    edges = cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 0), 40, 120)
    edge_fraction = float(np.count_nonzero(edges)) / edges.size
    if std < uniform_std:
        state = "uniform"
    elif dark > dark_or_bright_max:
        state = "dark"
    elif bright > dark_or_bright_max:
        state = "bright"
    elif edge_fraction < edge_fraction_max:
        state = "covered"
    else:
        state = "clear"
    return {"covered": state == "covered", "scene": state, "edge_fraction": round(edge_fraction, 5)}


class CoveredDetector:
    name = "covered"

    def __init__(self, frames: float = 5, width: float = 320, edges: float = 0.004) -> None:
        self.frames, self.width, self.edges = int(frames), int(width), edges
        if self.frames < 1:
            raise ValueError("covered: frames must be at least 1")

    def detect(self, frames: Sequence[Frame]) -> list[FrameResult]:
        out = []
        for _header, image in frames:
            verdict = judge(small_gray(image, self.width)[0], edge_fraction_max=self.edges)
            out.append(FrameResult(flags={**verdict, "covered_after": self.frames}))
        return out
