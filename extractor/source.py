"""Opening a camera source with PyAV and reading its video frames.

Files, RTSP (over TCP), HTTP(S) and HLS all go through FFmpeg's demuxers; what differs is only
whether the source ends (a file) or is expected to go on (anything with a network scheme).

An error is classified (:func:`classify`): a source that can never work as configured (no such
file, an unknown protocol such as ``rstp://``, HTTP 401/403/404, not a video at all) is
*permanent*; a timeout, a refused connection, a stall or a stream that ended is *transient*.
Either way the reason is FFmpeg's own message ("Server returned 404 Not Found"), never its errno
number. FFmpeg's RTSP demuxer says "Invalid data found when processing input" when its server
does not answer in time, the words it uses for a file that is no video: from a live source, after
a timeout or soon after it was online, that is transient.

A live stream is watched for stalls (:class:`StallWatch`): each blocking read has a deadline of
half the ``stall`` time (FFmpeg's RTSP demuxer hands back one held packet on the first interrupt,
so two deadlines pass before it fails), and a stream whose packets keep coming but whose video
does not fails with :class:`Stalled` once no video came for ``stall`` seconds past when its
timeline said it was due (HLS delivers a segment in a burst, then waits for the next one; its
reads keep the read timeout).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urlsplit

import av
import av.container


OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 10.0
MAX_LEAD_S = 60.0  # a stream ahead of (or behind) real time by more has jumped in its timeline: start afresh


class NoVideoStream(ValueError):
    """The source opened, but holds no video (an audio file, a data stream)."""


class Stalled(TimeoutError):
    """A live stream sent no video for its ``stall`` time (an OSError: one of SOURCE_ERRORS)."""


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


def classify(exc: BaseException, opened: bool = False, file: bool = True, timed_out: float | None = None,
             recently_online: bool = False) -> Failure:
    """Permanent or transient, with a readable reason. An error from a live source that had
    opened is transient whatever its type (a camera's stream can glitch and come back); from a
    file, or at opening, its type decides, except that "invalid data" from a live source is
    transient when the attempt ran into its timeout (``timed_out``: the seconds it was given) or
    the camera was online recently: a frozen or restarting server, not a source that is no video."""
    message = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if isinstance(exc, av.error.ExitError):  # PyAV's interrupt: our own deadline passed
        message = "timed out"
    permanent = isinstance(exc, PERMANENT_ERRORS) and (file or not opened)
    if not file and isinstance(exc, av.error.InvalidDataError):
        if timed_out is not None or recently_online:
            permanent = False
        if timed_out is not None:
            message = f"no answer within {timed_out:g}s ({message})"
    return Failure(permanent=permanent, reason=message, kind=type(exc).__name__)


def is_file(url: str) -> bool:
    """A local path or ``file://`` URL: it ends, and it has its own timeline."""
    return "://" not in url or urlsplit(url).scheme == "file"


def is_hls(url: str) -> bool:
    return urlsplit(url).path.endswith(".m3u8")


def read_deadline(url: str, read_timeout: float, stall: float | None) -> float:
    """How long one blocking read of ``url`` may take: half the stall time for a live stream
    (see the module's docstring), the read timeout for a file or HLS."""
    if stall is None or is_file(url) or is_hls(url):
        return read_timeout
    return min(read_timeout, stall / 2)


def open_source(url: str, open_timeout: float = OPEN_TIMEOUT_S, read_timeout: float = READ_TIMEOUT_S,
                stall: float | None = None) -> av.container.InputContainer:
    """Open a source; raises one of SOURCE_ERRORS (see :func:`classify`) when it cannot be read.
    ``stall``: a live stream's reads end within half of it (:func:`read_deadline`)."""
    options: dict[str, str] = {}
    scheme = urlsplit(url).scheme
    if scheme in ("rtsp", "rtsps"):
        # TCP: UDP loses packets on busy networks and smears frames; FFmpeg's default is UDP
        options["rtsp_transport"] = "tcp"
    elif scheme in ("http", "https"):
        options["reconnect"] = "0"  # camwire reconnects itself, with backoff and a status report
    if scheme == "file":
        url = urlsplit(url).path
    container = av.open(url, options=options, timeout=(open_timeout, read_deadline(url, read_timeout, stall)))
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


class StallWatch:
    """When a live stream's next video packet is overdue: ``stall`` seconds after the later of
    its arrival and the moment the stream's timeline reaches it (a burst ahead of real time,
    as HLS delivers, is not a stall; a jump in the timeline starts the reckoning afresh)."""

    def __init__(self, stall: float) -> None:
        self.stall = stall
        self.origin: float | None = None  # monotonic time of the timeline's zero, the latest seen
        self.due = time.monotonic() + stall  # the first packet, too, within the stall time of opening

    def video(self, t: float | None, now: float) -> None:
        """A video packet came at ``now`` (monotonic), ``t`` seconds into the stream."""
        if t is None:
            self.due = now + self.stall
            return
        if self.origin is None or abs(now - t - self.origin) > MAX_LEAD_S:
            self.origin = now - t
        self.origin = max(self.origin, now - t)  # behind real time: due later
        self.due = max(now, self.origin + t) + self.stall

    def check(self, now: float) -> None:
        if now > self.due:
            raise Stalled(f"stalled: no video for {self.stall:g}s")


def read_frames(container: av.container.InputContainer, keyframes_only: bool,
                on_packet: Callable[[av.Packet], None] | None = None,
                stall: float | None = None) -> Iterator[SourceFrame]:
    """Yield the video frames of the first video stream.

    With ``keyframes_only`` only key-frame packets reach the decoder: every other packet is
    counted (so ``index`` still counts source frames) and thrown away undecoded.
    ``on_packet`` sees every compressed packet (in demux order) after the decoder has had it,
    so a consumer may take the packet's data over (a bitstream filter does).
    ``stall`` (a live stream): raise :class:`Stalled` when no video came for that long
    (:class:`StallWatch`); every stream is demuxed then, so audio that still flows is seen.
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
    watch = StallWatch(stall) if stall is not None else None
    for packet in container.demux() if watch is not None else container.demux(stream):
        if watch is not None:
            now = time.monotonic()
            if packet.stream.index != stream.index:
                watch.check(now)
                continue
            if packet.size:
                watch.video(to_seconds(packet.dts if packet.dts is not None else packet.pts, base, tb), now)
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


def file_span(container: av.container.InputContainer) -> float:
    """How long a file plays, in seconds of its timeline: its container's duration, else its
    video stream's, else its frames at their rate; 0.0 when it says none of these."""
    stream = container.streams.video[0]
    if container.duration:
        return container.duration / av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    rate = stream.average_rate or stream.guessed_rate
    return float(stream.frames / rate) if stream.frames and rate else 0.0


def to_seconds(pts: int | None, base: int, time_base) -> float | None:
    if pts is None or time_base is None:
        return None
    return float((pts - base) * time_base)
