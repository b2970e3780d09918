"""Opening a camera source with PyAV and reading its video frames.

Files, RTSP (over TCP), HTTP(S) and HLS all go through FFmpeg's demuxers; what differs is only
whether the source ends (a file) or is expected to go on (anything with a network scheme).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urlsplit

import av
import av.container

OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 10.0


def is_file(url: str) -> bool:
    """A local path or ``file://`` URL: it ends, and it has its own timeline."""
    return "://" not in url or urlsplit(url).scheme == "file"


def open_source(url: str, open_timeout: float = OPEN_TIMEOUT_S, read_timeout: float = READ_TIMEOUT_S) -> av.container.InputContainer:
    """Open a source; raises ``av.error.FFmpegError`` (or ``OSError``) when it cannot be reached."""
    options: dict[str, str] = {}
    scheme = urlsplit(url).scheme
    if scheme in ("rtsp", "rtsps"):
        # TCP: UDP loses packets on busy networks and smears frames; FFmpeg's default is UDP
        options["rtsp_transport"] = "tcp"
    elif scheme in ("http", "https"):
        options["reconnect"] = "0"  # camwire reconnects itself, with backoff and a status report
    if scheme == "file":
        url = urlsplit(url).path
    return av.open(url, options=options, timeout=(open_timeout, read_timeout))


@dataclass(slots=True)
class SourceFrame:
    """A decoded frame and where it stands in the source: ``index`` counts every source frame."""

    index: int
    frame: av.VideoFrame
    t: float | None  # seconds in the source's timeline, from its first frame
    key: bool


def read_frames(container: av.container.InputContainer, keyframes_only: bool,
                on_packet: Callable[[av.Packet], None] | None = None) -> Iterator[SourceFrame]:
    """Yield the video frames of the first video stream.

    With ``keyframes_only`` only key-frame packets reach the decoder: every other packet is
    counted (so ``index`` still counts source frames) and thrown away undecoded.
    ``on_packet`` sees every compressed packet (in demux order) after the decoder has had it,
    so a consumer may take the packet's data over (a bitstream filter does).
    """
    stream = container.streams.video[0]
    base = stream.start_time or 0
    tb = stream.time_base
    # slice threading in key-frame mode: frame threading would hold each key frame back until
    # the next one arrives
    stream.thread_type = "SLICE" if keyframes_only else "AUTO"
    if keyframes_only:
        stream.codec_context.skip_frame = "NONKEY"
    fed: deque[int] = deque()  # source index of each packet given to the decoder, in order
    index = 0
    for packet in container.demux(stream):
        frames: list[av.VideoFrame] = []
        if packet.size:  # the empty packet at the end flushes the decoder
            index += 1
            if not keyframes_only or packet.is_keyframe:
                fed.append(index - 1)
                frames = packet.decode()
            if on_packet is not None:
                on_packet(packet)
        else:
            frames = packet.decode()
        for frame in frames:
            # a frame the decoder drops leaves its index queued: take the oldest not yet past
            i = fed.popleft() if fed else index - 1
            yield SourceFrame(i, frame, to_seconds(frame.pts, base, tb), frame.key_frame or keyframes_only)


def to_seconds(pts: int | None, base: int, time_base) -> float | None:
    if pts is None or time_base is None:
        return None
    return float((pts - base) * time_base)
