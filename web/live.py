"""The live view of ``camwire web``: recent frames of each watched camera, each drawn with the
detections found in it, JPEG-encoded once for all its viewers, and the WebSocket ``/api/live`` that
streams them.

What it holds (:class:`LiveHub`), per watched camera: a ring of its recent frames (at most
``RING_FRAMES``, ``RING_SECONDS`` of capture time and ``RING_BYTES`` of memory; pixels kept as
received and decoded only when a viewer is shown them; H.264/HEVC packets decoded as they come, one
PyAV decoder per camera, each picture kept as the decoder's YUV frame), its recent ``wire.Result``s by frame (at most
``RESULTS_KEPT``; results that say ``error`` are not kept), and the JPEGs made of the frames last
shown, by width. A camera nobody watches keeps nothing: its frames are counted and dropped, and with
no viewer the daemon subscribes to nothing (``wanted``), so no viewer costs nothing.

Which frame a viewer is shown (``_choose``): while results flow for the camera (a result for a frame
still in the ring, heard within ``RESULT_FRESH_S``), the newest frame that has one, drawn with
exactly its result's detections; otherwise (motion gate shut, sampling skipping, workers down or
slower than the ring is long) the newest frame, with no detections. Workers answer 100-500 ms after
a frame was captured: boxes drawn on the newest frame would trail a moving object, so the view lags
by the workers' latency instead, and only while there are boxes to draw. A result matches its frame
by seq and capture time (pixel frames: the published header is the one sent to the workers), or for
a packet stream by pts (its seq counts packets, not pictures; by seq where there is no pts). Motion
boxes are the frame's own (its header's, else its result's copy of them).

The WebSocket (web.live_socket): the client sends text JSON ``{"watch": {CAMERA: {"width": 320,
"fps": 5}, ...}}``, which replaces what it watched (``{}``: nothing; width is held to 64..1920 and
never above the source's, fps to 0.2..30). The server sends one binary message per frame per watched
camera, at most ``fps`` a second of capture time (see Pacing): a 4-byte big-endian length N, N bytes
of UTF-8 JSON ``{"camera", "seq", "ts", "width", "height", "boxes", "detected"}`` (``ts`` the
capture time in seconds since the epoch, ``width``/``height`` the JPEG's, ``boxes`` the number of
detections drawn, ``detected`` whether the frame carries its result's boxes), then the JPEG. A
viewer is never sent a frame older than one it was sent (the order frames came in; from a packet
stream, the decoder's output order), and a frame again only to add its boxes: when the newest frame
with a result is older than what it got, it gets nothing until a newer one is drawable. Text that is
not such JSON closes the socket (1003, with the reason). From a packet stream ``seq`` is that of the
packet that held the picture: with B-frames it may step back while the pictures go forward.

Pacing (``slot``, ``_due``): capture time is cut into slots of 1/fps seconds, the same grid for every
viewer (``floor(ts * fps)``, ``ts`` the chosen frame's capture time). A viewer is sent a camera's
chosen frame when its slot is not that of the frame it last got (or it is that same frame, now with
its boxes): at most one frame a slot, so ``fps`` frames a second of capture time, and viewers at the
same fps and width are sent the same frames and share their JPEGs (a viewer's own clock would pick
different frames for each). A viewer still busy sending takes the newest chosen frame when it is free.

Counters (``counters``, ints; ``counters_snapshot`` for a copy): frames_in, frames_ignored (no
viewer), results_in (kept for a watched camera), waiting_key (packets before a decoder's first key
packet), gaps (a packet stream's seq skipped: its decoder starts again at a key packet),
decode_errors, encodes, sent (messages), skipped_slow (frames that came while a viewer's socket was
still taking an earlier one, less the one it gets next), bad_requests (a client's text refused),
wakes (a viewer's sender woken for a camera's new frame or result).

Threads: ``on_frame``, ``on_result``, ``wanted``, ``cameras_seen`` are called by the daemon's
ZeroMQ thread; they never wait for a viewer and hold the ring lock only for list and dict work. On
a new frame or result they choose the camera's frame once and wake only the viewers it is due to
(``_due``): one ``call_soon_threadsafe`` per event loop wakes them all, so a frame that no viewer is
sent costs no wake-up (ten 5 fps viewers of a 25 fps camera: 5 wake-ups a second each, not 25).
What a viewer last got (``_Viewer.got``) is written by its sender and read there unlocked (one dict
lookup). ``live_socket`` runs on the aiohttp thread's event loop and calls ``_render`` through the
loop's executor, so decoding, drawing and encoding run on executor threads; rendering is thread safe
and two identical requests wait for one encode.

Why: a JPEG is made once per (camera, frame, width, with or without its boxes), however many people
watch, and only for frames someone is shown. A viewer whose socket is slow is sent the frame chosen
when it is ready for one, never a queue of old ones: each viewer takes one frame at a time.
Memory: ring frames of a pixel camera hold their parts as received (LZ4 or JPEG: compressed; a
``raw`` publisher's are not), and only the frame last rendered holds its BGR image; a packet
camera's pictures stay as the decoder gave them (YUV 4:2:0 from nearly every camera: 1.5 bytes a
pixel, half of BGR, and no conversion for frames nobody is shown), and a picture wider than
``MAX_WIDTH`` (no viewer gets more) is scaled down to it before it is kept: a 4K ring would
otherwise hold 12 MB a frame.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

import av
import numpy as np

from common import wire
from common.geometry import Polygon
from common.pixels import decode_frame, encode_jpeg
from web.drawing import draw, to_bgr

RING_FRAMES = 32  # recent frames kept per watched camera: more than workers' latency at 25 fps
RING_SECONDS = 3.0  # ... and no more capture time than this (a slow camera's frames are far apart)
RING_BYTES = 48 << 20  # ... and no more memory than this: 15 decoded 1080p pictures (0.6 s at 25 fps)
RESULTS_KEPT = 64  # recent results kept per watched camera
RESULT_FRESH_S = 2.0  # results flow while one for a frame in the ring was heard this recently
PTS_MATCH_NS = 1_000_000_000  # a packet frame's pts matches a result's only this close in capture time
ENCODES_KEPT = 4  # frames per camera whose JPEGs are kept (a new viewer may be shown an older one)
MIN_WIDTH, MAX_WIDTH, DEFAULT_WIDTH = 64, 1920, 640
MIN_FPS, MAX_FPS, DEFAULT_FPS = 0.2, 30.0, 5.0
MAX_WATCHED = 64  # cameras one viewer may watch at once
MAX_CLIENT_TEXT = 65536  # a watch request is tens of bytes a camera
MAX_PENDING = 64  # packets in a decoder whose picture has not come out yet (B-frames delay a few)
JPEG_QUALITY = 80
# a send waits for the socket to drain once this much was written since the last wait (aiohttp's
# default is 256 KiB): small, so that a slow viewer holds up its own sender after a frame, and what
# it gets next is the frame chosen then, not the few that would otherwise have piled up in the buffer
WRITER_LIMIT = 65536
CAMERA_NAME = re.compile(wire.CAMERA_NAME_PATTERN)
COUNTERS = ("frames_in", "frames_ignored", "results_in", "waiting_key", "gaps", "encodes", "sent", "skipped_slow",
            "decode_errors", "bad_requests", "wakes")

Zones = Callable[[str], Mapping[str, Polygon]] | Mapping[str, Mapping[str, Polygon]]


class Want(NamedTuple):
    """What a viewer asked of one camera."""

    width: int
    fps: float


class _Frame:
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


class _Got(NamedTuple):
    """What a viewer was last sent of a camera (or tried: a frame that did not decode)."""

    mark: tuple[int, bool]  # _Choice.mark
    ts_ns: int  # its capture time: the slot it filled


class _Heard(NamedTuple):
    result: wire.Result
    at: float  # the hub's clock when it came


class _Choice(NamedTuple):
    """The frame a viewer is shown now, with its result (None: drawn without detections)."""

    frame: _Frame
    result: wire.Result | None
    newest: int  # the number of the camera's newest frame
    changes_in: float | None  # seconds until the result stops being fresh (the choice may move on)

    @property
    def mark(self) -> tuple[int, bool]:
        """Orders what viewers are shown: a newer frame, or the same one now with its boxes."""
        return self.frame.number, self.result is not None


class _Camera:
    """One watched camera's recent frames (oldest first) and results (by seq, and by pts)."""

    def __init__(self) -> None:
        self.frames: deque[_Frame] = deque()
        self.by_seq: dict[int, _Heard] = {}
        self.by_pts: dict[float, _Heard] = {}
        self.arrivals = 0  # frames added (read by viewers, unlocked)
        self.bytes = 0  # what the frames in the ring hold
        self.heard_at = float("-inf")  # when the latest result came: none is fresh after it is stale

    def add_frame(self, frame: _Frame) -> None:
        self.frames.append(frame)
        self.arrivals += 1
        self.bytes += frame.size
        newest_ns = frame.header.ts_ns
        while len(self.frames) > 1 and (len(self.frames) > RING_FRAMES or self.bytes > RING_BYTES
                                        or newest_ns - self.frames[0].header.ts_ns > RING_SECONDS * 1e9):
            self.bytes -= self.frames.popleft().size

    def add_result(self, heard: _Heard) -> None:
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

    def result_of(self, header: wire.FrameHeader) -> _Heard | None:
        if header.is_packet and header.pts is not None:
            heard = self.by_pts.get(header.pts)
            ok = heard is not None and abs(heard.result.ts_ns - header.ts_ns) <= PTS_MATCH_NS
        else:
            heard = self.by_seq.get(header.seq)
            # a pixel frame's result carries its very header's capture time; a packet stream
            # without pts has only seq to go by
            ok = heard is not None and (header.is_packet or heard.result.ts_ns == header.ts_ns)
        return heard if ok else None

    def choose(self, now: float) -> _Choice | None:
        if not self.frames:
            return None
        newest = self.frames[-1].number
        if self.heard_at + RESULT_FRESH_S < now:  # no fresh result at all: skip looking for one
            return _Choice(self.frames[-1], None, newest, None)
        for frame in reversed(self.frames):
            heard = self.result_of(frame.header)
            if heard is not None and (left := heard.at + RESULT_FRESH_S - now) >= 0:
                return _Choice(frame, heard.result, newest, left)
        return _Choice(self.frames[-1], None, newest, None)


@dataclass
class _Decoder:
    """A camera's packet decoder; ``epoch`` is the camera's watch epoch it was started in."""

    enc: str
    epoch: int
    ctx: av.CodecContext
    pending: dict[int, wire.FrameHeader] = field(default_factory=dict)  # seq -> header, until its picture
    last_seq: int = -1  # of the packet fed last: a gap (a packet lost on the way) restarts at a key packet


class _Viewer:
    """One WebSocket client: what it watches, what it was last sent, and how to wake its sender
    (on its own loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wake = asyncio.Event()
        self.watch: dict[str, Want] = {}  # replaced whole, never changed in place
        self.got: dict[str, _Got] = {}  # camera -> last sent; its sender's to write
        # camera -> the choice it was woken for (None: choose now); its loop's alone
        self.look_at: dict[str, _Choice | None] = {}

    def look(self, cameras: Iterable[str], choice: _Choice | None = None) -> None:
        """On its loop: have its sender look at ``cameras`` again, and show ``choice`` if due."""
        for camera in cameras:
            self.look_at[camera] = choice
        self.wake.set()


def slot(ts_ns: int, fps: float) -> int:
    """Which 1/fps-second slot of capture time ``ts_ns`` falls in: ``floor(ts * fps)``, in integers
    (fps to the millihertz) so that every viewer and the hub cut the same grid."""
    return ts_ns * round(fps * 1000) // 1_000_000_000_000


def _due(choice: _Choice, got: _Got | None, fps: float) -> bool:
    """Whether a viewer at ``fps`` last sent ``got`` is sent ``choice``: a newer frame in another slot
    than the last one's, or that same frame now with its boxes; never an older one."""
    if got is None:
        return True
    if choice.mark <= got.mark:
        return False
    return choice.frame.number == got.mark[0] or slot(choice.frame.header.ts_ns, fps) != slot(got.ts_ns, fps)


def _look(viewers: Sequence[_Viewer], camera: str, choice: _Choice) -> None:
    for viewer in viewers:
        viewer.look((camera,), choice)


class LiveHub:
    """Recent frames and results per watched camera, and their JPEGs; see the module's docstring."""

    def __init__(self, zones: Zones, max_frame_bytes: int = wire.DEFAULT_MAX_FRAME_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.zones_of: Callable[[str], Mapping[str, Polygon]] = (
            zones if callable(zones) else (lambda camera: zones.get(camera, {})))
        self.max_frame_bytes = max_frame_bytes
        self.clock = clock  # when a result was heard: how fresh it is
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._count_lock = threading.Lock()
        self._lock = threading.Lock()  # viewers, watchers, epochs, the encode cache, the decoded frame
        self._ring_lock = threading.Lock()  # the cameras' rings and results (taken after _lock, never before)
        self._viewers: set[_Viewer] = set()
        # camera -> its viewers; replaced whole (never changed in place) so the ZeroMQ thread reads it unlocked
        self._watchers: dict[str, tuple[_Viewer, ...]] = {}
        self._epochs: dict[str, int] = {}  # bumped each time a camera goes from unwatched to watched
        self._cameras: dict[str, _Camera] = {}  # watched cameras only
        self._sizes: dict[str, tuple[int, int]] = {}
        self._decoders: dict[str, _Decoder] = {}  # the ZeroMQ thread's alone
        # camera -> (frame number, with its result) -> width -> the JPEG (a Future while it is made)
        self._encodes: dict[str, OrderedDict[tuple[int, bool], dict[int, Future]]] = {}
        self._decoded: dict[str, _Frame] = {}  # the frame per camera that holds its BGR image
        self._number = 0

    # --- the ZeroMQ thread's side ---------------------------------------------------------------

    def on_frame(self, parts: Sequence[wire.Buffer]) -> None:
        """A published frame ``[FrameHeader, payload]``; MalformedMessage when its header is not one."""
        header = wire.peek_frame(parts, self.max_frame_bytes)
        camera = header.camera
        self._count("frames_in")
        self._sizes[camera] = (header.width, header.height)
        watchers = self._watchers.get(camera)
        if not watchers:
            # in flight when the last viewer left; a decoder would miss packets from here on
            self._decoders.pop(camera, None)
            self._count("frames_ignored")
            return
        if header.is_packet:
            frames = self._decode_packet(header, parts[1])
        else:
            frames = [_Frame(header, (bytes(parts[0]), bytes(parts[1])))]  # the receive buffer is reused
        if not frames:
            return
        with self._ring_lock:
            if camera not in self._watchers:  # its last viewer left meanwhile
                return
            ring = self._cameras.setdefault(camera, _Camera())
            for frame in frames:
                self._number += 1
                frame.number = self._number
                ring.add_frame(frame)
            choice = ring.choose(self.clock())
        self._wake(camera, watchers, choice)

    def on_result(self, result: wire.Result) -> None:
        """A result from the sink's detections stream: kept for its frame, and its viewers woken
        (its frame may be the newest with boxes now). One that says ``error`` has no boxes to draw."""
        camera = result.camera
        watchers = self._watchers.get(camera)
        if not watchers or result.error is not None:
            return
        with self._ring_lock:
            if camera not in self._watchers:
                return
            ring = self._cameras.setdefault(camera, _Camera())
            now = self.clock()
            ring.add_result(_Heard(result, now))
            choice = ring.choose(now)
        self._count("results_in")
        if choice is not None:  # None: the result came before any frame
            self._wake(camera, watchers, choice)

    def _wake(self, camera: str, watchers: Sequence[_Viewer], choice: _Choice) -> None:
        """Wake the senders of those of ``camera``'s viewers that ``choice`` is due to: one
        call per event loop for all of them."""
        due: dict[asyncio.AbstractEventLoop, list[_Viewer]] = {}
        for viewer in watchers:
            want = viewer.watch.get(camera)
            if want is not None and _due(choice, viewer.got.get(camera), want.fps):
                due.setdefault(viewer.loop, []).append(viewer)
        for loop, viewers in due.items():
            try:
                loop.call_soon_threadsafe(_look, viewers, camera, choice)
            except RuntimeError:  # that loop has closed: its viewers are going away
                continue
            self._count("wakes", len(viewers))

    def wanted(self) -> set[str]:
        """The cameras at least one viewer watches now."""
        return set(self._watchers)

    def cameras_seen(self) -> dict[str, tuple[int, int]]:
        """(width, height) of each camera's last frame seen, watched or not."""
        return dict(self._sizes)

    def viewer_count(self) -> int:
        return len(self._viewers)

    def counters_snapshot(self) -> dict[str, int]:
        with self._count_lock:
            return dict(self.counters)

    def _decode_packet(self, header: wire.FrameHeader, payload: wire.Buffer) -> list[_Frame]:
        """Feed one H.264/HEVC packet to the camera's decoder; the pictures it gave, in output order."""
        camera = header.camera
        epoch = self._epochs.get(camera, 0)
        decoder = self._decoders.get(camera)
        if decoder is not None and (decoder.epoch != epoch or decoder.enc != header.enc):
            decoder = None  # packets were missed while nobody watched, or the stream changed codec
        elif decoder is not None and header.seq != decoder.last_seq + 1:
            decoder = None  # a packet lost on the way (a full buffer): pictures until the next key would smear
            self._count("gaps")
        if decoder is None:
            if not header.key:
                self._decoders.pop(camera, None)
                self._count("waiting_key")
                return []
            ctx = av.CodecContext.create(header.enc, "r")
            ctx.thread_type = "SLICE"  # frame threads would hold pictures back a frame each
            if header.extradata:
                ctx.extradata = header.extradata
            decoder = self._decoders[camera] = _Decoder(header.enc, epoch, ctx)
        decoder.last_seq = header.seq
        packet = av.Packet(bytes(payload))
        packet.pts = header.seq  # comes back on the picture: which header it belongs to (B-frames reorder)
        decoder.pending[header.seq] = header
        while len(decoder.pending) > MAX_PENDING:
            del decoder.pending[next(iter(decoder.pending))]
        try:
            pictures = decoder.ctx.decode(packet)
        except av.FFmpegError:
            self._decoders.pop(camera, None)  # start again from the next key packet
            self._count("decode_errors")
            return []
        frames = []
        for picture in pictures:
            held = decoder.pending.pop(picture.pts, None) if picture.pts is not None else None
            frames.append(_Frame(held or header, picture=_kept(picture)))
        return frames

    # --- viewers (the event loop's side) --------------------------------------------------------

    def _add_viewer(self, viewer: _Viewer) -> None:
        with self._lock:
            self._viewers.add(viewer)

    def _remove_viewer(self, viewer: _Viewer) -> None:
        with self._lock:
            self._viewers.discard(viewer)
            self._rebuild()

    def _set_watch(self, viewer: _Viewer, watch: dict[str, Want]) -> None:
        with self._lock:
            viewer.watch = watch
            # a camera watched again starts afresh: its first frame is not held to an old slot
            viewer.got = {camera: got for camera, got in viewer.got.items() if camera in watch}
            self._rebuild()

    def _rebuild(self) -> None:
        """Who watches what, after a change (under ``_lock``); a camera unwatched keeps nothing, and
        one watched again starts afresh."""
        watchers: dict[str, list[_Viewer]] = {}
        for viewer in self._viewers:
            for camera in viewer.watch:
                watchers.setdefault(camera, []).append(viewer)
        for camera in watchers.keys() - self._watchers.keys():
            self._epochs[camera] = self._epochs.get(camera, 0) + 1
        gone = self._watchers.keys() - watchers.keys()
        for camera in gone:
            self._encodes.pop(camera, None)
            self._decoded.pop(camera, None)
        with self._ring_lock:
            for camera in gone:
                self._cameras.pop(camera, None)
            self._watchers = {camera: tuple(viewers) for camera, viewers in watchers.items()}

    def _choose(self, camera: str) -> _Choice | None:
        """The frame to show of ``camera`` now (see the module's docstring); None when it has none."""
        now = self.clock()
        with self._ring_lock:
            ring = self._cameras.get(camera)
            return None if ring is None else ring.choose(now)

    def _arrived(self, camera: str) -> int:
        ring = self._cameras.get(camera)
        return 0 if ring is None else ring.arrivals

    def _count(self, name: str, n: int = 1) -> None:
        with self._count_lock:
            self.counters[name] = self.counters.get(name, 0) + n

    # --- rendering (executor threads) -----------------------------------------------------------

    def jpeg(self, camera: str, width: int) -> tuple[dict, bytes] | None:
        """The frame of ``camera`` a viewer would be shown now, at ``width`` (never wider than the
        source), drawn and JPEG-encoded: (its message header, the JPEG); None when there is no
        frame or it does not decode."""
        choice = self._choose(camera)
        return None if choice is None else self._render(choice, width)

    def _render(self, choice: _Choice, width: int) -> tuple[dict, bytes] | None:
        frame = choice.frame
        camera = frame.header.camera
        width = max(1, min(int(width), frame.header.width))
        with self._lock:
            encodes = self._encodes.get(camera)
            if encodes is None and camera in self._watchers:
                encodes = self._encodes[camera] = OrderedDict()
            if encodes is None:  # nobody watches it now: made, not kept
                cache: dict[int, Future] = {}
            elif (cache := encodes.get(choice.mark)) is None:
                cache = encodes[choice.mark] = {}
                while len(encodes) > ENCODES_KEPT:
                    encodes.popitem(last=False)
            future = cache.get(width)
            mine = future is None
            if mine:
                future = cache[width] = Future()
        if not mine:
            return future.result()  # another thread is making (or made) this very JPEG
        try:
            out = self._draw_and_encode(choice, width)
        except BaseException as exc:
            with self._lock:
                cache.pop(width, None)
            future.set_exception(exc)
            raise
        future.set_result(out)
        return out

    def _draw_and_encode(self, choice: _Choice, width: int) -> tuple[dict, bytes] | None:
        frame, result = choice.frame, choice.result
        h = frame.header
        image, decoded = frame.image(self.max_frame_bytes)
        if image is None:
            if decoded:
                self._count("decode_errors")
            return None
        with self._lock:  # one BGR image held per camera: the last frame drawn
            held = self._decoded.get(h.camera)
            if held is not frame and h.camera in self._watchers:
                self._decoded[h.camera] = frame
        if held is not None and held is not frame:
            held.forget_image()  # outside _lock: it waits while that frame is being decoded
        height = max(1, round(h.height * width / h.width))
        import cv2  # as common.pixels: only where pixels are touched

        # a decoded picture may differ from its header's size (a stream that changed mid-way, a
        # picture kept scaled down): the size asked wins
        small = (cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
                 if image.shape[:2] != (height, width) else image.copy())
        detections = result.detections if result is not None else []
        motion = h.motion or (result.motion if result is not None else [])
        draw(small, width / h.width, detections, self.zones_of(h.camera), motion, (h.width, h.height))
        data = encode_jpeg(small, JPEG_QUALITY)
        self._count("encodes")
        meta = {"camera": h.camera, "seq": h.seq, "ts": h.ts_ns / 1e9, "width": width, "height": height,
                "boxes": len(detections), "detected": result is not None}
        return meta, data


def _kept(picture: av.VideoFrame) -> av.VideoFrame:
    """A decoded picture as the ring keeps it: as it came (YUV 4:2:0 from H.264/HEVC: 1.5 bytes a
    pixel, no work), or, wider than any viewer is sent, scaled down to ``MAX_WIDTH`` in YUV 4:2:0."""
    if picture.width <= MAX_WIDTH:
        return picture
    height = max(2, round(picture.height * MAX_WIDTH / picture.width / 2) * 2)
    return picture.reformat(width=MAX_WIDTH, height=height, format="yuv420p")
