"""``camwire sample-clip``: a built-in H.264 clip with known content, for the demo and the tests.

A textured street-like scene; a bright box and a disc move across it; between ``covered_from``
and ``covered_to`` seconds the lens is "covered" (a dim, blurred, low-detail picture that is
neither black nor uniform, as a hand or a cloth over a lens looks).
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from camwire.common.daemon import EXIT_OK


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output .mp4 path")
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    p.add_argument("--gop", type=int, default=50, help="frames between key frames")


def main(args: argparse.Namespace) -> int:
    width, height = (int(v) for v in args.size.lower().split("x"))
    n = make_sample_clip(Path(args.out), seconds=args.seconds, fps=args.fps, width=width, height=height, gop=args.gop)
    print(f"wrote {args.out}: {n} frames")
    return EXIT_OK


def background(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    img = np.full((height, width, 3), 110, np.uint8)
    for _ in range(40):  # buildings and signs: edges for the covered detector to miss when covered
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height // 2))
        w, h = int(rng.integers(20, 120)), int(rng.integers(20, 160))
        colour = tuple(int(c) for c in rng.integers(40, 220, 3))
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
    cv2.rectangle(img, (0, height * 2 // 3), (width, height), (70, 70, 70), -1)
    for x in range(0, width, 60):
        cv2.line(img, (x, height * 5 // 6), (x + 30, height * 5 // 6), (230, 230, 230), 3)
    return img


def sample_frame(i: int, fps: int, width: int, height: int, base: np.ndarray,
                 covered: tuple[float, float] | None, moving: bool = True) -> np.ndarray:
    t = i / fps
    if covered and covered[0] <= t < covered[1]:
        dim = cv2.GaussianBlur(base, (0, 0), 25) // 3 + 50
        noise = np.random.default_rng(i).integers(-3, 4, dim.shape)
        return np.clip(dim.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    frame = base.copy()
    if not moving:
        return frame
    x = int((t * width / 4) % (width + 120)) - 60
    cv2.rectangle(frame, (x, height // 2), (x + 60, height // 2 + 40), (20, 220, 250), -1)
    cx = width - int((t * width / 6) % width)
    cv2.circle(frame, (cx, height * 3 // 4), 25, (200, 40, 40), -1)
    return frame


def make_sample_clip(path: Path, seconds: float = 12.0, fps: int = 25, width: int = 640, height: int = 360,
                     gop: int = 50, covered: tuple[float, float] | None = (5.0, 8.0), moving: bool = True) -> int:
    """Encode the clip with libx264; returns the number of frames written. ``moving=False``: no shapes,
    a still scene (motion only where the cover comes and goes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = background(width, height)
    frames = int(round(seconds * fps))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.gop_size = gop
        stream.options = {"preset": "veryfast", "crf": "23", "keyint_min": str(gop), "sc_threshold": "0",
                          "bframes": "0"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(sample_frame(i, fps, width, height, base, covered, moving), format="bgr24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return frames
