"""Motion, seen by the extractor in every decoded frame of its camera, and the gate it opens.

The extractor is the one place that sees every frame of a camera, so motion is found here, once
per camera, whatever the number of workers (a worker sees only the frames it is given). On a
small grey copy of each frame (``width`` pixels wide, made from the decoded picture's own luma
plane: no colour conversion; see :func:`small_grey`), the background difference ignores what is
not motion:

- sensor noise: the copy is downscaled (averaging pixels) and blurred before differencing;
- flicker and exposure changes: the median difference over the frame (over one pixel in 16 of it,
  a sample as good for a median and 15 times cheaper) is taken off every pixel, so a light that
  dims the whole scene moves nothing;
- small vibrations: thin edge slivers from a shaking camera are removed by a morphological
  opening, and a blob must cover ``min_area`` of the frame to count;
- the camera's ``masks`` (common.geometry): pixels inside them never count.

What it decides, per camera (MotionGate, pure: time comes in with each frame):

- the state: motion starts in the first frame with a moving blob and ends ``off_delay`` seconds
  (of the camera's own timeline) after the last one. Each change is one ``wire.Motion`` message
  (the sink turns them into ``motion_start``/``motion_end`` events, sink.motion_state);
- the gate: with ``detect = "motion"`` a sampled frame goes to the classifiers only while the
  state is on, or when none has gone for ``heartbeat`` seconds (so a parked car is still seen);
  ``detect = "always"`` sends every sampled frame. The extractor counts each frame held back as
  ``skipped/no_motion``;
- the boxes of each frame (source pixels) ride in its FrameHeader's ``motion``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from camwire.common import wire
from camwire.common.pixels import LIMITED_TO_FULL
from camwire.common.settings.extractor import DETECT
from camwire.common.geometry import Polygon, mask_image


@dataclass(frozen=True, slots=True)
class MotionSettings:
    """The extractor's ``--motion-*`` flags."""

    threshold: float = 25.0  # grey levels a pixel must change by, beyond the frame's median change
    min_area: float = 0.003  # share of the frame a moving blob must cover
    off_delay: float = 5.0  # seconds without motion before it ends
    heartbeat: float = 10.0  # with detect="motion": a frame to the classifiers at least this often
    width: int = 320  # of the grey copy motion is found in
    alpha: float = 0.1  # how fast the background follows the scene, per frame

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 255:
            raise ValueError(f"--motion-threshold is from 1 to 255 grey levels, not {self.threshold}")
        if not 0 <= self.min_area <= 1:
            raise ValueError(f"--motion-min-area is a share of the frame from 0 to 1, not {self.min_area}")
        if self.off_delay < 0:
            raise ValueError(f"--motion-off-delay cannot be negative, not {self.off_delay}")
        if self.heartbeat <= 0:
            raise ValueError(f"--motion-heartbeat must be more than 0, not {self.heartbeat}")


class MotionDetector:
    """One camera connection's background and mask; ``boxes`` per frame, in source pixels."""

    def __init__(self, settings: MotionSettings, masks: tuple[Polygon, ...] = ()) -> None:
        self.settings, self.masks = settings, masks
        self._background: np.ndarray | None = None
        self._keep: np.ndarray | None = None  # 1 where motion counts (outside every mask)
        import cv2  # here, not at import: a daemon judging the extractor's flags never loads OpenCV

        self._cv2 = cv2
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def small_size(self, width: int, height: int) -> tuple[int, int]:
        w = min(self.settings.width, width)
        return w, max(1, round(height * w / width))

    def boxes_of_frame(self, frame) -> list[tuple[float, float, float, float]]:
        """A decoded PyAV VideoFrame: its grey copy at the small size, then ``boxes``."""
        w, h = self.small_size(frame.width, frame.height)
        return self.boxes(small_grey(frame, w, h, self._cv2), frame.width, frame.height)

    def boxes(self, small: np.ndarray, width: int, height: int) -> list[tuple[float, float, float, float]]:
        """``small``: the frame's grey copy (uint8); ``width``/``height``: the source frame's size."""
        s, cv2 = self.settings, self._cv2
        small = cv2.GaussianBlur(small, (5, 5), 0).astype(np.float32)
        if self._background is None or self._background.shape != small.shape:
            self._background = small
            self._keep = (cv2.resize(mask_image(self.masks, width, height), (small.shape[1], small.shape[0]),
                                     interpolation=cv2.INTER_NEAREST) == 0).astype(np.uint8) if self.masks else None
            return []
        diff = small - self._background
        keep = self._keep
        # a global brightness change is not motion (the masked part, a flickering sign say, has no say)
        sample, kept = diff[::4, ::4], None if keep is None else keep[::4, ::4].astype(bool)
        diff -= np.median(sample[kept] if kept is not None and kept.any() else sample)
        moving = (np.abs(diff) > s.threshold).astype(np.uint8)
        if keep is not None:
            moving &= keep
        moving = cv2.morphologyEx(moving, cv2.MORPH_OPEN, self._kernel)
        moving = cv2.dilate(moving, self._kernel, iterations=2)
        if keep is not None:
            moving &= keep  # the dilation does not spill back into a mask
        cv2.accumulateWeighted(small, self._background, s.alpha)
        min_pixels = s.min_area * moving.size
        sx, sy = width / small.shape[1], height / small.shape[0]
        n, _labels, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
        blobs = sorted((row for row in stats[1:n] if row[4] >= min_pixels), key=lambda r: -r[4])
        return [(round(float(x * sx), 1), round(float(y * sy), 1), round(float((x + w) * sx), 1),
                 round(float((y + h) * sy), 1)) for x, y, w, h, _area in blobs[:wire.MAX_MOTION_BOXES]]


# decoded formats whose first plane is the 8-bit luma, full size: what cameras' decoders give
LUMA_FIRST = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"})


JPEG_RANGE = 2  # AVCOL_RANGE_JPEG: full-range luma (PyAV's VideoFrame.color_range)


def small_grey(frame, width: int, height: int, cv2) -> np.ndarray:
    """A decoded frame's grey copy at ``width`` x ``height``, full range (0-255) as FFmpeg's
    scaler makes it. From its luma plane as decoded (a view) when it has one: averaged down by a
    whole factor (OpenCV's area filter is fast at whole factors, slow at others), bilinear to the
    size, limited-range luma stretched to full; 0.1 ms for 768x576 to 320x240 where FFmpeg's
    scaler took 0.9. Any other format through FFmpeg's scaler."""
    if frame.format.name in LUMA_FIRST:
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8)
        if luma.size >= plane.line_size * frame.height and plane.line_size >= frame.width:
            luma = luma[:plane.line_size * frame.height].reshape(frame.height, plane.line_size)[:, :frame.width]
            k = min(frame.width // width, frame.height // height)
            if k >= 2:
                luma = cv2.resize(luma, (frame.width // k, frame.height // k), interpolation=cv2.INTER_AREA)
            if luma.shape != (height, width):
                luma = cv2.resize(luma, (width, height), interpolation=cv2.INTER_LINEAR)
            full = frame.format.name.startswith("yuvj") or frame.format.name == "gray" or frame.color_range == JPEG_RANGE
            return np.ascontiguousarray(luma) if full else cv2.LUT(luma, LIMITED_TO_FULL)
    return frame.to_ndarray(format="gray", width=width, height=height)


class MotionGate:
    """One camera's motion state and the gate to the classifiers. Time is the frame's own ``t``
    (seconds of the camera's timeline), so a file read faster than real time decides as a
    camera would."""

    def __init__(self, camera: str, settings: MotionSettings, detect: str = "motion") -> None:
        if detect not in DETECT:
            raise ValueError(f"detect is {' or '.join(DETECT)}, not {detect!r}")
        self.camera, self.settings, self.detect = camera, settings, detect
        self.active = False
        self._started_ns = 0
        self._last_motion_t: float | None = None
        self._last_sent_t: float | None = None
        self._last: tuple[int, int] | None = None  # (ts_ns, seq) of the newest frame seen

    def update(self, boxes: list, t: float, ts_ns: int, seq: int) -> wire.Motion | None:
        """A frame's motion boxes; the Motion message when the state changes with it, else None."""
        self._last = (ts_ns, seq)
        if boxes:
            self._last_motion_t = t
            if not self.active:
                self.active, self._started_ns = True, ts_ns
                return wire.Motion(camera=self.camera, active=True, ts_ns=ts_ns, seq=seq, boxes=boxes)
            return None
        if self.active and self._last_motion_t is not None:
            if t < self._last_motion_t:  # the timeline jumped back: count the delay from here
                self._last_motion_t = t
            elif t - self._last_motion_t >= self.settings.off_delay - 1e-6:
                return self._end(ts_ns, seq)
        return None

    def finish(self) -> wire.Motion | None:
        """The stream ended (a file's end, a lost connection): motion that was on ends at its last frame."""
        if self.active and self._last is not None:
            return self._end(*self._last)
        return None

    def _end(self, ts_ns: int, seq: int) -> wire.Motion:
        self.active = False
        return wire.Motion(camera=self.camera, active=False, ts_ns=max(ts_ns, self._started_ns),
                           started_ns=self._started_ns, seq=seq)

    def wanted(self, t: float) -> bool:
        """Whether a sampled frame at ``t`` goes on to the classifiers (call ``update`` first)."""
        if self.detect == "always" or self.active or self._last_sent_t is None:
            return True
        # a hair of tolerance: 6.2 - 4.2 s of a 10 fps timeline is 2 s, whatever floats make of it
        return t < self._last_sent_t or t - self._last_sent_t >= self.settings.heartbeat - 1e-6

    def sent(self, t: float) -> None:
        self._last_sent_t = t
