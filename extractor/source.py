"""Opening a camera source with PyAV and reading its video frames.

Files, RTSP (over TCP), HTTP(S) and HLS all go through FFmpeg's demuxers; what differs is only
whether the source ends (a file) or is expected to go on (anything with a network scheme).

An error is classified (:func:`classify`): a source that can never work as configured (no such
file, an unknown protocol such as ``rstp://``, HTTP 401/403/404, not a video at all) is
*permanent*; a timeout, a refused connection or a stream that ended is *transient*. Either way
the reason is FFmpeg's own message ("Server returned 404 Not Found"), never its errno number.
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


class NoVideoStream(ValueError):
    """The source opened, but holds no video (an audio file, a data stream)."""


# what no retry can mend: the operator has to change the source (or its server its content)
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,  # av.error's subclass these
    av.error.ProtocolNotFoundError, av.error.DemuxerNotFoundError, av.error.DecoderNotFoundError,
    av.error.HTTPBadRequestError, av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError,
    av.error.HTTPNotFoundError, av.error.HTTPOtherClientError, av.error.InvalidDataError, NoVideoStream,
)
# what reading a source may raise; anything else is a bug and crashes the camera's thread
SOURCE_ERRORS: tuple[type[BaseException], ...] = (av.error.FFmpegError, OSError, ValueError)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a source could not be read: ``reason`` is for people, ``kind`` a counter label."""

    permanent: bool
    reason: str
    kind: str


def classify(exc: BaseException, opened: bool = False, file: bool = True) -> Failure:
    """Permanent or transient, with a readable reason. An error from a live source that had
    opened is transient whatever its type (a camera's stream can glitch and come back); from a
    file, or at opening, its type decides."""
    message = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    permanent = isinstance(exc, PERMANENT_ERRORS) and (file or not opened)
    return Failure(permanent=permanent, reason=message, kind=type(exc).__name__)


def is_file(url: str) -> bool:
    """A local path or ``file://`` URL: it ends, and it has its own timeline."""
    return "://" not in url or urlsplit(url).scheme == "file"


def open_source(url: str, open_timeout: float = OPEN_TIMEOUT_S, read_timeout: float = READ_TIMEOUT_S) -> av.container.InputContainer:
    """Open a source; raises one of SOURCE_ERRORS (see :func:`classify`) when it cannot be read."""
    options: dict[str, str] = {}
    scheme = urlsplit(url).scheme
    if scheme in ("rtsp", "rtsps"):
        # TCP: UDP loses packets on busy networks and smears frames; FFmpeg's default is UDP
        options["rtsp_transport"] = "tcp"
    elif scheme in ("http", "https"):
        options["reconnect"] = "0"  # camwire reconnects itself, with backoff and a status report
    if scheme == "file":
        url = urlsplit(url).path
    container = av.open(url, options=options, timeout=(open_timeout, read_timeout))
    if not container.streams.video:
        container.close()
        raise NoVideoStream("no video stream")
    return container


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
