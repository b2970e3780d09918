"""Preview stills for the recordings timeline: the key frame at or before a time, small, as JPEG.

Reads the recorder's ``DIR`` through recorder.catalog (the segment that holds the time, an open
one up to its newest frame on disk), never writing there. A still is the key frame the recorder
already wrote (an I-frame decodes alone: one decode, no reference frames), scaled to
``WIDTH`` pixels wide. Finding it reads packets only, not pictures, up to the time asked for.

Stills are kept in a small LRU keyed by (file, key frame time): scrubbing across one group of
pictures asks for many times and costs one decode. The console's route (web.api) runs
:func:`preview_jpeg` in its blocking executor for a recorder on its host; a recorder answers
another host's console with it (recorder.served).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import av

from camwire.common.pixels import encode_jpeg
from camwire.recorder import catalog
from camwire.recorder.index import Segment

WIDTH = 240  # px: a tooltip's picture, enough to tell a car from a person
QUALITY = 70
CACHED = 256  # stills kept: ~8 kB each, 2 MB in all


class _Lru:
    """A bounded map, the least recently used going first; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple, value: bytes) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


_cache = _Lru(CACHED)
decodes = 0  # key frames decoded since start (a test reads it: a cached still is not decoded again)


def preview_jpeg(root: Path, camera: str, ts: float, width: int = WIDTH) -> bytes:
    """The key frame of ``camera`` at or before ``ts`` (seconds since the epoch), ``width`` px
    wide, as JPEG; LookupError when nothing is recorded at ``ts``."""
    ts_ns = int(ts * 1e9)
    seg = _holding(root, camera, ts_ns)
    if seg is None:
        raise LookupError(f"nothing recorded for {camera!r} at {ts}")
    path = root / seg.path
    offset_ms = (ts_ns - seg.start_ns) // 1_000_000
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            key = None
            for packet in container.demux(stream):
                if not packet.size or packet.pts is None:
                    continue
                t_ms = int(packet.pts * packet.time_base * 1000)
                if t_ms > offset_ms:
                    break
                if packet.is_keyframe:
                    key = packet
            if key is None:  # a file whose first frames are not on disk yet
                raise LookupError(f"no key frame of {camera!r} at or before {ts} on disk yet")
            cache_key = (str(path), int(key.pts), width)
            jpeg = _cache.get(cache_key)
            if jpeg is None:
                jpeg = _encode(stream, key, width)
                _cache.put(cache_key, jpeg)
            return jpeg
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise
        # retention deleted it as it was read, or the open file's header is not written yet
        raise LookupError(f"the recording of {camera!r} at {ts} cannot be read: {exc}") from None
    except IndexError:  # no video stream: a header cut off
        raise LookupError(f"the recording of {camera!r} at {ts} holds no video yet") from None


def _holding(root: Path, camera: str, ts_ns: int) -> Segment | None:
    """The newest segment that starts at or before ``ts_ns`` and reaches past it (an open one as
    far as its frames on disk go), or None."""
    for seg in reversed(catalog.segments(root, camera, ts_ns, ts_ns + 1)):
        end_ns = seg.end_ns if seg.end_ns is not None else catalog.open_end(root, seg)
        if seg.start_ns <= ts_ns < end_ns and (root / seg.path).is_file():
            return seg
    return None


def _encode(stream: av.video.stream.VideoStream, key: av.Packet, width: int) -> bytes:
    """Decode the key frame alone (a fresh decoder: nothing before it is needed) and scale it."""
    global decodes
    codec = av.CodecContext.create(stream.codec_context.name, "r")
    if stream.codec_context.extradata:
        codec.extradata = stream.codec_context.extradata
    frames = list(codec.decode(key)) + list(codec.decode(None))
    if not frames:
        raise LookupError("the key frame did not decode")
    frame = frames[0]
    height = max(2, round(frame.height * width / frame.width))
    image = frame.reformat(width=width, height=height, format="bgr24").to_ndarray()
    decodes += 1
    return encode_jpeg(image, QUALITY)
