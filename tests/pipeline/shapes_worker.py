"""``camwire classifier`` with one more detector, ``shapes``: it finds camwire.sample's moving
shapes by their colours, a yellow ``box`` and a blue ``disc``, as a real detector finds objects. ``shapes:delay=S`` answers each frame S seconds late (a slow
worker, so results reach the sink out of order). Run as a script: ``python shapes_worker.py
classifier --detector shapes ...``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from camwire.classifier import detectors  # noqa: E402
from camwire.classifier.detectors import Detection, FrameResult  # noqa: E402


# (label, lowest BGR, highest BGR): the colours camwire.sample draws them in, give or take H.264
SHAPES = (("box", np.array([0, 170, 200], np.uint8), np.array([80, 255, 255], np.uint8)),
          ("disc", np.array([150, 0, 0], np.uint8), np.array([255, 90, 90], np.uint8)))


class Shapes:
    name = "shapes"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def detect(self, frames):
        if self.delay:
            time.sleep(self.delay)  # a slow model, not a wait for anything
        return [self._one(image) for _header, image in frames]

    def _one(self, image: np.ndarray) -> FrameResult:
        out = []
        for label, lo, hi in SHAPES:
            mask = cv2.inRange(image, lo, hi)
            n, _labels, stats, _centres = cv2.connectedComponentsWithStats(mask)
            for x, y, bw, bh, area in stats[1:]:
                # a disc is round: the background's blue rectangle (70x32) is not one
                if area >= 200 and (label != "disc" or 0.75 <= bw / bh <= 1.33):
                    out.append(Detection(label, 0.9, (float(x), float(y), float(x + bw), float(y + bh))))
        return FrameResult(detections=out)

detectors.NAMES = (*detectors.NAMES, "shapes")  # so the worker's check knows it too
_builtin = detectors._registry
detectors._registry = lambda: {**_builtin(), "shapes": detectors._builtin(Shapes)}

if __name__ == "__main__":
    from camwire.cli import main

    sys.exit(main(sys.argv[1:]))
