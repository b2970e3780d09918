"""One ring segment being written: a Matroska file of one camera's video, from one capture time.

Matroska because it stays playable when the writer dies: clusters are flushed as they are
finished (at most ``CLUSTER_MS`` of video each) and a reader needs no index at the end. Two
kinds of writer, one per kind of input:

- :class:`PacketSegment` remuxes the source's own H.264/HEVC packets (``passthrough``): no
  decoding or encoding, the bytes on disk are the camera's.
- :class:`FrameSegment` encodes decoded frames (``lz4``/``raw``/``jpeg`` on the wire) with
  libx264, tuned for zero latency so no frame waits inside the encoder.

File timestamps are milliseconds from the segment's first frame; the index holds the absolute
capture time of that frame, so absolute time = ``start_ns`` + pts. The file's name says that time
too (:func:`segment_name`, read back by :func:`start_of`).
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from camwire.common import wire
from camwire.common.paths import utc_stamp

CLUSTER_MS = 1000  # what a kill -9 may lose from the end of the file being written
MS = Fraction(1, 1000)
MUX_OPTIONS = {"flush_packets": "1", "cluster_time_limit": str(CLUSTER_MS)}
TIMELINE_JUMP_S = 5.0  # a source timeline that moves this far from capture time has been reset
# a ring file (``<UTC start>[-n].mkv``) or a kept link to one (``<camera>-<same>``, recorder.keep.kept_name)
NAME = re.compile(r"(\d{8}T\d{6}\.\d{3})Z(?:-(\d+))?\.mkv$")


def segment_name(start_ns: int, n: int = 0) -> str:
    """A segment file's name: its first frame's capture time (UTC, to the millisecond), then
    ``-n`` for the ``n``-th file of that same millisecond (``n`` > 0: after a restart)."""
    return f"{utc_stamp(start_ns)}{f'-{n}' if n else ''}.mkv"


def start_of(path: Path) -> int:
    """The capture time (ns, to the millisecond) a ring file's name says its first frame has;
    ValueError for a file named otherwise."""
    m = NAME.search(path.name)
    if m is None:
        raise ValueError(f"not a recorder segment name: {path.name}")
    dt = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=timezone.utc)
    return (int(dt.timestamp()) * 1000 + dt.microsecond // 1000) * 1_000_000


def name_order(path: Path) -> tuple[str, int]:
    """Sorts segment files (and kept links to them) in time order, by name; another name by itself."""
    m = NAME.search(path.name)
    return (m.group(1), int(m.group(2) or 0)) if m else (path.name, 0)


class SegmentFile:
    """What both writers share: the file, its first capture time, the frames written."""

    def __init__(self, path: Path, start_ns: int) -> None:
        self.path = path
        self.start_ns = start_ns
        self.end_ns = start_ns
        self.frames = 0
        self.gaps = 0
        self.bytes = 0  # of video muxed so far (what a size cut looks at; the file adds a little)
        self.last_seq: int | None = None  # of the last frame written (the index keeps it: a restart's gap)
        self._max_ts_ns = start_ns
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), "w", format="matroska", options=MUX_OPTIONS)

    def _advance(self, header: wire.FrameHeader, nbytes: int) -> None:
        """Track where the segment ends (past its latest frame by the mean frame interval), its
        size and its last seq."""
        self._max_ts_ns = max(self._max_ts_ns, header.ts_ns)
        self.frames += 1
        self.bytes += nbytes
        self.last_seq = header.seq
        step = (self._max_ts_ns - self.start_ns) // (self.frames - 1) if self.frames > 1 else 0
        self.end_ns = self._max_ts_ns + step

    def elapsed_s(self, ts_ns: int) -> float:
        return (ts_ns - self.start_ns) / 1e9

    def close(self) -> int:
        """Finalise the file; returns its size in bytes."""
        self.container.close()
        return os.path.getsize(self.path)


class PacketSegment(SegmentFile):
    """Remuxes passed-through packets; the first packet must be a key frame."""

    def __init__(self, path: Path, first: wire.FrameHeader) -> None:
        super().__init__(path, first.ts_ns)
        self.enc = first.enc
        self.stream = self.container.add_mux_stream(first.enc, width=first.width, height=first.height)
        self.stream.time_base = MS
        # the key frame's presentation time is 0 in the file (and start_ns in the index); the
        # decode times of frames shown after it but decoded before may be below 0
        self._anchor = first.pts if first.pts is not None else (first.dts or 0.0)
        self._last_dts: int | None = None
        self._extradata = first.extradata if first.extradata and _is_annexb(first.extradata) else None

    def continues(self, header: wire.FrameHeader) -> bool:
        """Whether a packet belongs to this file's timeline (a reconnected source starts anew)."""
        if header.enc != self.enc:
            return False
        t = _decode_time(header)
        return t is None or abs((t - self._anchor) - self.elapsed_s(header.ts_ns)) < TIMELINE_JUMP_S

    def write(self, header: wire.FrameHeader, data: wire.Buffer) -> None:
        payload = bytes(data)
        if self._extradata is not None:
            # parameter sets in front of the first key frame: the muxer takes them from there
            payload, self._extradata = self._extradata + payload, None
        packet = av.Packet(payload)
        dts = _ms(_decode_time(header), self._anchor)
        pts = _ms(header.pts, self._anchor)
        if self._last_dts is not None and (dts is None or dts <= self._last_dts):
            dts = self._last_dts + 1
        elif dts is None:
            dts = pts if pts is not None else 0
        packet.dts = dts
        packet.pts = max(pts, dts) if pts is not None else dts
        packet.time_base = MS
        packet.is_keyframe = header.key
        packet.stream = self.stream
        self.container.mux(packet)
        self._last_dts = dts
        self._advance(header, len(payload))


class FrameSegment(SegmentFile):
    """Encodes decoded frames with libx264 (``preset``, CRF ``crf``), key frame every ``gop``."""

    def __init__(self, path: Path, first: wire.FrameHeader, preset: str, crf: int, gop: int) -> None:
        super().__init__(path, first.ts_ns)
        self.width, self.height = first.width & ~1, first.height & ~1  # 4:2:0 needs even sides
        self.stream = self.container.add_stream(
            "libx264", options={"preset": preset, "tune": "zerolatency", "crf": str(crf)})
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = MS
        self.stream.codec_context.time_base = MS
        self.stream.codec_context.gop_size = gop
        self._last_pts = -1
        self.channels = first.channels

    def continues(self, header: wire.FrameHeader) -> bool:
        return (header.width & ~1, header.height & ~1) == (self.width, self.height) and header.channels == self.channels

    def write(self, header: wire.FrameHeader, image: np.ndarray) -> None:
        image = image[: self.height, : self.width]
        fmt = "gray" if image.ndim == 2 else "bgra" if image.shape[2] == 4 else "bgr24"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
        pts = max(self._last_pts + 1, (header.ts_ns - self.start_ns) // 1_000_000)
        frame.pts, frame.time_base = pts, MS
        packets = self.stream.encode(frame)
        self.container.mux(packets)
        self._last_pts = pts
        self._advance(header, sum(p.size for p in packets))

    def close(self) -> int:
        self.container.mux(self.stream.encode(None))  # whatever the encoder still holds
        return super().close()


def _decode_time(header: wire.FrameHeader) -> float | None:
    return header.dts if header.dts is not None else header.pts


def _ms(seconds: float | None, anchor: float) -> int | None:
    return None if seconds is None else round((seconds - anchor) * 1000)


def _is_annexb(data: bytes) -> bool:
    return data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01")
