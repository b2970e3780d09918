"""The live view's memory of one watched camera (:class:`CameraRing`, web.live): its recent
frames (:class:`Frame`: the parts as received, or a decoded picture, made a BGR image only when
drawn) and its recent results, and which of its frames a viewer is shown now (:class:`Choice`).

Which frame a viewer is shown (``CameraRing.choose``): while results flow for the camera (a result for a frame
still in the ring, heard within ``RESULT_FRESH_S``), the newest frame that has one, drawn with
exactly its result's detections; otherwise (motion gate shut, sampling skipping, workers down or
slower than the ring is long) the newest frame, with no detections. Workers answer 100-500 ms after
a frame was captured: boxes drawn on the newest frame would trail a moving object, so the view lags
by the workers' latency instead, and only while there are boxes to draw. A result matches its frame
by seq and capture time (pixel frames: the published header is the one sent to the workers), or for
a packet stream by pts (its seq counts packets, not pictures; by seq where there is no pts). Motion
boxes are the frame's own (its header's, else its result's copy of them).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import NamedTuple

import av
import numpy as np

from camwire.common import wire
from camwire.common.pixels import decode_frame
from camwire.web.drawing import to_bgr

RING_FRAMES = 32  # recent frames kept per watched camera: more than workers' latency at 25 fps
RING_SECONDS = 3.0  # ... and no more capture time than this (a slow camera's frames are far apart)
RING_BYTES = 48 << 20  # ... and no more memory than this: 15 decoded 1080p pictures (0.6 s at 25 fps)
RESULTS_KEPT = 64  # recent results kept per watched camera
RESULT_FRESH_S = 2.0  # results flow while one for a frame in the ring was heard this recently
PTS_MATCH_NS = 1_000_000_000  # a packet frame's pts matches a result's only this close in capture time


class Frame:
    """One kept frame: the received parts (pixels) or a decoded picture (packets), turned into a
    BGR image on request, under its own lock; the hub drops that image when another frame is drawn."""

    __slots__ = ("header", "parts", "picture", "number", "size", "_image", "_failed", "_lock")

    def __init__(self, header: wire.FrameHeader, parts: tuple[bytes, bytes] | None = None,
                 picture: av.VideoFrame | None = None) -> None:
        self.header = header
        self.parts = parts
        self.picture = picture
        self.number = 0  # the hub's arrival number: which of two frames is newer
        # bytes it holds in the ring (its parts, or its decoded picture's planes), counted once
        self.size = (len(parts[0]) + len(parts[1]) if parts is not None
                     else sum(plane.buffer_size for plane in picture.planes) if picture is not None else 0)
        self._image: np.ndarray | None = None
        self._failed = False
        self._lock = threading.Lock()

    def image(self, max_bytes: int) -> tuple[np.ndarray | None, bool]:
        """(the BGR uint8 image or None when the payload does not decode, whether this call decoded it).
        The image is shared: draw on a copy."""
        with self._lock:
            if self._image is not None or self._failed:
                return self._image, False
            try:
                if self.picture is not None:
                    self._image = self.picture.to_ndarray(format="bgr24")
                else:
                    self._image = to_bgr(decode_frame(self.parts, max_bytes)[1])
            except wire.MalformedMessage:
                self._failed = True
                self.parts = None  # it will not decode next time either
            return self._image, True

    def forget_image(self) -> None:
        with self._lock:
            self._image = None  # the parts or the picture remain: it can be decoded again


class Heard(NamedTuple):
    """A result as the ring keeps it: with when it came (how fresh it is)."""

    result: wire.Result
    at: float  # the hub's clock when it came


class Choice(NamedTuple):
    """The frame a viewer is shown now, with its result (None: drawn without detections)."""

    frame: Frame
    result: wire.Result | None
    newest: int  # the number of the camera's newest frame
    changes_in: float | None  # seconds until the result stops being fresh (the choice may move on)

    @property
    def mark(self) -> tuple[int, bool]:
        """Orders what viewers are shown: a newer frame, or the same one now with its boxes."""
        return self.frame.number, self.result is not None


class CameraRing:
    """One watched camera's recent frames (oldest first) and results (by seq, and by pts)."""

    def __init__(self) -> None:
        self.frames: deque[Frame] = deque()
        self.by_seq: dict[int, Heard] = {}
        self.by_pts: dict[float, Heard] = {}
        self.arrivals = 0  # frames added (read by viewers, unlocked)
        self.bytes = 0  # what the frames in the ring hold
        self.heard_at = float("-inf")  # when the latest result came: none is fresh after it is stale

    def add_frame(self, frame: Frame) -> None:
        self.frames.append(frame)
        self.arrivals += 1
        self.bytes += frame.size
        newest_ns = frame.header.ts_ns
        while len(self.frames) > 1 and (len(self.frames) > RING_FRAMES or self.bytes > RING_BYTES
                                        or newest_ns - self.frames[0].header.ts_ns > RING_SECONDS * 1e9):
            self.bytes -= self.frames.popleft().size

    def add_result(self, heard: Heard) -> None:
        result = heard.result
        self.heard_at = max(self.heard_at, heard.at)
        self.by_seq.pop(result.seq, None)  # a second result for a frame (another worker's) is the newer
        self.by_seq[result.seq] = heard
        if result.pts is not None:
            self.by_pts.pop(result.pts, None)
            self.by_pts[result.pts] = heard
        for held in (self.by_seq, self.by_pts):
            while len(held) > RESULTS_KEPT:
                del held[next(iter(held))]

    def result_of(self, header: wire.FrameHeader) -> Heard | None:
        if header.is_packet and header.pts is not None:
            heard = self.by_pts.get(header.pts)
            ok = heard is not None and abs(heard.result.ts_ns - header.ts_ns) <= PTS_MATCH_NS
        else:
            heard = self.by_seq.get(header.seq)
            # a pixel frame's result carries its very header's capture time; a packet stream
            # without pts has only seq to go by
            ok = heard is not None and (header.is_packet or heard.result.ts_ns == header.ts_ns)
        return heard if ok else None

    def choose(self, now: float) -> Choice | None:
        if not self.frames:
            return None
        newest = self.frames[-1].number
        if self.heard_at + RESULT_FRESH_S < now:  # no fresh result at all: skip looking for one
            return Choice(self.frames[-1], None, newest, None)
        for frame in reversed(self.frames):
            heard = self.result_of(frame.header)
            if heard is not None and (left := heard.at + RESULT_FRESH_S - now) >= 0:
                return Choice(frame, heard.result, newest, left)
        return Choice(self.frames[-1], None, newest, None)
