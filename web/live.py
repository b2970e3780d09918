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

Its parts, one job each: the ring of one camera and which frame a viewer is shown
(web.live_ring), the packet decoders (web.live_decode), what a viewer asks for and the pacing that
says which frame is due to it (web.live_viewers), the drawing (web.drawing), and the WebSocket
``/api/live`` with its message format (web.live_socket). This module is the hub that joins them:
the frames and results coming in, the viewers, and the JPEGs made once for all of them.

Counters (``counters``, ints; ``counters_snapshot`` for a copy): frames_in, frames_ignored (no
viewer), results_in (kept for a watched camera), waiting_key (packets before a decoder's first key
packet), gaps (a packet stream's seq skipped: its decoder starts again at a key packet),
decode_errors, encodes, sent (messages), skipped_slow (frames that came while a viewer's socket was
still taking an earlier one, less the one it gets next), bad_requests (a client's text refused),
wakes (a viewer's sender woken for a camera's new frame or result).

Threads: ``on_frame``, ``on_result``, ``wanted``, ``cameras_seen`` are called by the daemon's
ZeroMQ thread; they never wait for a viewer and hold the ring lock only for list and dict work. On
a new frame or result they choose the camera's frame once and wake only the viewers it is due to
(``is_due``): one ``call_soon_threadsafe`` per event loop wakes them all, so a frame that no viewer is
sent costs no wake-up (ten 5 fps viewers of a 25 fps camera: 5 wake-ups a second each, not 25).
What a viewer last got (``Viewer.got``) is written by its sender and read there unlocked (one dict
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
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Callable, Mapping, Sequence

from camwire.common import wire
from camwire.common.geometry import Polygon
from camwire.common.pixels import encode_jpeg
from camwire.web.drawing import draw
from camwire.web.live_decode import PacketDecoders
from camwire.web.live_ring import CameraRing, Choice, Frame, Heard
from camwire.web.live_viewers import Viewer, Want, is_due, look

ENCODES_KEPT = 4  # frames per camera whose JPEGs are kept (a new viewer may be shown an older one)
JPEG_QUALITY = 80
COUNTERS = ("frames_in", "frames_ignored", "results_in", "waiting_key", "gaps", "encodes", "sent", "skipped_slow",
            "decode_errors", "bad_requests", "wakes")

Zones = Callable[[str], Mapping[str, Polygon]] | Mapping[str, Mapping[str, Polygon]]


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
        self._viewers: set[Viewer] = set()
        # camera -> its viewers; replaced whole (never changed in place) so the ZeroMQ thread reads it unlocked
        self._watchers: dict[str, tuple[Viewer, ...]] = {}
        self._epochs: dict[str, int] = {}  # bumped each time a camera goes from unwatched to watched
        self._cameras: dict[str, CameraRing] = {}  # watched cameras only
        self._sizes: dict[str, tuple[int, int]] = {}
        self._decoders = PacketDecoders(self._count)  # the ZeroMQ thread's alone
        # camera -> (frame number, with its result) -> width -> the JPEG (a Future while it is made)
        self._encodes: dict[str, OrderedDict[tuple[int, bool], dict[int, Future]]] = {}
        self._decoded: dict[str, Frame] = {}  # the frame per camera that holds its BGR image
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
            self._decoders.forget(camera)
            self._count("frames_ignored")
            return
        if header.is_packet:
            frames = self._decoders.decode(header, parts[1], self._epochs.get(camera, 0))
        else:
            frames = [Frame(header, (bytes(parts[0]), bytes(parts[1])))]  # the receive buffer is reused
        if not frames:
            return
        with self._ring_lock:
            if camera not in self._watchers:  # its last viewer left meanwhile
                return
            ring = self._cameras.setdefault(camera, CameraRing())
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
            ring = self._cameras.setdefault(camera, CameraRing())
            now = self.clock()
            ring.add_result(Heard(result, now))
            choice = ring.choose(now)
        self._count("results_in")
        if choice is not None:  # None: the result came before any frame
            self._wake(camera, watchers, choice)

    def _wake(self, camera: str, watchers: Sequence[Viewer], choice: Choice) -> None:
        """Wake the senders of those of ``camera``'s viewers that ``choice`` is due to: one
        call per event loop for all of them."""
        due: dict[asyncio.AbstractEventLoop, list[Viewer]] = {}
        for viewer in watchers:
            want = viewer.watch.get(camera)
            if want is not None and is_due(choice, viewer.got.get(camera), want.fps):
                due.setdefault(viewer.loop, []).append(viewer)
        for loop, viewers in due.items():
            try:
                loop.call_soon_threadsafe(look, viewers, camera, choice)
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

    # --- viewers (the event loop's side) --------------------------------------------------------

    def _add_viewer(self, viewer: Viewer) -> None:
        with self._lock:
            self._viewers.add(viewer)

    def _remove_viewer(self, viewer: Viewer) -> None:
        with self._lock:
            self._viewers.discard(viewer)
            self._rebuild()

    def _set_watch(self, viewer: Viewer, watch: dict[str, Want]) -> None:
        with self._lock:
            viewer.watch = watch
            # a camera watched again starts afresh: its first frame is not held to an old slot
            viewer.got = {camera: got for camera, got in viewer.got.items() if camera in watch}
            self._rebuild()

    def _rebuild(self) -> None:
        """Who watches what, after a change (under ``_lock``); a camera unwatched keeps nothing, and
        one watched again starts afresh."""
        watchers: dict[str, list[Viewer]] = {}
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

    def _choose(self, camera: str) -> Choice | None:
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

    def _render(self, choice: Choice, width: int) -> tuple[dict, bytes] | None:
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

    def _draw_and_encode(self, choice: Choice, width: int) -> tuple[dict, bytes] | None:
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

