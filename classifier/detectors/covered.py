"""``covered``: is the lens covered or blinded?

A hand, a cloth or spray on the lens sits far closer than the focus, so the picture keeps its
shading (light leaking round the edges) but loses every sharp detail, in every part of the frame.
Real scenes can be low in detail too, and must not raise an alarm: a bare car park seen from
above (a few paint lines and grit), a wall, a night scene. So the judgement is made on a grid
of cells, not on the frame as a whole: a cell has detail when some pixel in it stands out from
its neighbourhood (a high-pass peak, which grit, a paint line or sensor noise gives and a
defocused cover does not), and a frame is covered only when nearly every cell is flat.

Beside that, three pictures hold no detail yet are not tampering: a night scene (mostly
near-black), a blown-out one (mostly near-white), and a plain picture with no shading either (a
dead stream, or an evenly lit wall: nothing to tell it from a cover, so no alarm). The judgement
is per frame; the sink fires ``camera_covered`` after ``frames`` consecutive covered frames of a
camera, a number carried in the result's flags with the scene and ``edge_fraction`` (the share of
cells with detail).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from camwire.classifier.detectors import Frame, FrameResult
from camwire.classifier.detectors.imaging import is_rgb, small_gray

GRID = (8, 6)  # cells across, down: a cover spans them all; a real scene has detail in many


def cells_with_detail(gray: np.ndarray, detail: float = 6.0, grid: tuple[int, int] = GRID) -> float:
    """Share of grid cells holding a pixel that differs from its blurred neighbourhood by more than ``detail``."""
    g = gray.astype(np.float32)
    peaks = cv2.absdiff(g, cv2.GaussianBlur(g, (0, 0), 1.5))
    gx, gy = grid
    h, w = (peaks.shape[0] // gy) * gy, (peaks.shape[1] // gx) * gx
    if h == 0 or w == 0:
        return 0.0
    per_cell = peaks[:h, :w].reshape(gy, h // gy, gx, w // gx).max(axis=(1, 3))
    return float(np.count_nonzero(per_cell > detail)) / per_cell.size


def judge(gray: np.ndarray, cells_max: float = 0.1, detail: float = 6.0, dark_or_bright_max: float = 0.7,
          uniform_std: float = 1.5, shading_min: float = 6.0) -> dict[str, float | bool | str]:
    """Pure decision on a small grayscale frame (about 320 wide); returns the verdict and the measures behind it.

    ``cells_max``: the largest share of cells with detail a covered frame may have (a finger's edge
    in a corner). ``shading_min``: the std of the smoothed picture below which a flat frame is
    ``uniform`` rather than covered.
    """
    std = float(gray.std())
    dark = float(np.count_nonzero(gray < 25)) / gray.size
    bright = float(np.count_nonzero(gray > 230)) / gray.size
    edge_fraction = cells_with_detail(gray, detail)
    if std < uniform_std:
        state = "uniform"
    elif dark > dark_or_bright_max:
        state = "dark"
    elif bright > dark_or_bright_max:
        state = "bright"
    elif edge_fraction > cells_max:
        state = "clear"
    elif float(cv2.GaussianBlur(gray, (0, 0), 3).std()) < shading_min:
        state = "uniform"
    else:
        state = "covered"
    return {"covered": state == "covered", "scene": state, "edge_fraction": round(edge_fraction, 5)}


class CoveredDetector:
    name = "covered"
    formats = ("gray", "bgr", "rgb")  # it looks at grey: YUV 4:2:0's Y plane is given as it is

    def __init__(self, frames: float = 5, width: float = 320, cells: float = 0.1, detail: float = 6.0) -> None:
        self.frames, self.width, self.cells, self.detail = int(frames), int(width), cells, detail
        if self.frames < 1:
            raise ValueError("covered: frames must be at least 1")
        if not 0 <= cells < 1:
            raise ValueError("covered: cells must be a share from 0 to below 1")
        if self.width < 64:
            raise ValueError("covered: width must be at least 64")

    def detect(self, frames: Sequence[Frame]) -> list[FrameResult]:
        out = []
        for header, image in frames:
            verdict = judge(small_gray(image, self.width, rgb=is_rgb(header))[0], cells_max=self.cells,
                            detail=self.detail)
            out.append(FrameResult(flags={**verdict, "covered_after": self.frames}))
        return out
