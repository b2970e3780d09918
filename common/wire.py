"""camwire's wire format: what goes over every ZeroMQ socket between two daemons.

Every message is multipart. Part 0 is always a msgpack map with two fixed keys:

    {"v": PROTOCOL_VERSION, "kind": "<frame|result|ready|heartbeat|reset|status|eos|workers|...>", ...}

A **frame** (extractor -> ventilator -> worker, extractor PUB -> recorder) is two parts:

    [msgpack header, pixel buffer]

    header keys: camera (str), seq (int, per camera, from 0), ts_ns (capture time, wall clock,
    ns since the epoch), pts and dts (seconds in the source's timeline, or None), width, height,
    dtype ("uint8"), channels (3 for bgr24, 1 for gray), enc ("raw" | "lz4" | "jpeg" | "h264" |
    "hevc"), live (False for a file read as fast as the pipeline takes it), key (key frame),
    extradata (bytes or None).

    The buffer is sent with ``copy=False``; for ``raw`` it is exactly width*height*channels
    bytes, for ``lz4`` an LZ4 block of those bytes, for ``jpeg`` a JPEG file.

    ``h264`` and ``hevc`` (the extractor's ``--publish-enc passthrough``) carry the source's own
    compressed packet instead of pixels, in Annex B form with the parameter sets in band before
    each key frame; key packets also carry the codec's ``extradata``. Nothing is decoded to make
    them, and a recorder remuxes them as they are.

A **result** (worker -> sink) is one part, or two when a JPEG snapshot of the frame rides along.
Control messages (ready, heartbeat, reset, bye, status, eos, workers, event) are one part:
``status`` is a camera's state from its extractor (see extractor.camera), ``workers`` the
ventilator's view of its workers (see classifier.ventilator), ``event`` what the sink publishes.

Anything that does not fit raises :class:`MalformedMessage` with a short ``reason`` that daemons
use as a counter label. Nothing here ever unpickles: msgpack is built with ``raw=False`` and no
ext hooks, so a message can carry data and nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import cv2
import lz4.block
import msgpack
import numpy as np

PROTOCOL_VERSION = 1
ENCODINGS = ("raw", "lz4", "jpeg")  # pixels
PACKET_ENCODINGS = ("h264", "hevc")  # compressed packets, passed through from the source
MAX_HEADER_BIN = 65536  # extradata is tens of bytes; a header never needs more than this
DTYPES = {"uint8": np.uint8, "uint16": np.uint16}
CONTROL_KINDS = ("ready", "heartbeat", "reset", "bye", "status", "eos", "workers", "result", "event")
MAX_SIDE = 16384  # larger than any camera; stops a forged header from asking for terabytes

Buffer = bytes | memoryview


class MalformedMessage(ValueError):
    """A message that does not follow the wire format; ``reason`` is a short counter label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """What a frame says about itself; the pixels travel in the next part."""

    camera: str
    seq: int
    ts_ns: int
    pts: float | None
    width: int
    height: int
    channels: int = 3
    dtype: str = "uint8"
    enc: str = "raw"
    live: bool = True
    key: bool = False
    dts: float | None = None
    extradata: bytes | None = None

    @property
    def is_packet(self) -> bool:
        return self.enc in PACKET_ENCODINGS

    @property
    def raw_size(self) -> int:
        return self.width * self.height * self.channels * np.dtype(self.dtype).itemsize

    @property
    def shape(self) -> tuple[int, ...]:
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)

    def with_enc(self, enc: str) -> "FrameHeader":
        return FrameHeader(**{**asdict(self), "enc": enc})


def pack(kind: str, body: dict[str, Any]) -> bytes:
    """Serialise one control or result map; the version and kind are added here, nowhere else."""
    return msgpack.packb({"v": PROTOCOL_VERSION, "kind": kind, **body}, use_bin_type=True)


def unpack(part: Buffer) -> dict[str, Any]:
    """Parse part 0 of any message and check its version and kind."""
    try:
        obj = msgpack.unpackb(part, raw=False, strict_map_key=True, max_bin_len=MAX_HEADER_BIN, max_ext_len=0)
    except Exception as exc:  # msgpack raises a handful of unrelated types for bad input
        raise MalformedMessage("bad_msgpack", str(exc)) from None
    if not isinstance(obj, dict):
        raise MalformedMessage("bad_header", "header is not a map")
    if obj.get("v") != PROTOCOL_VERSION:
        raise MalformedMessage("bad_version", repr(obj.get("v")))
    kind = obj.get("kind")
    if kind != "frame" and kind not in CONTROL_KINDS:
        raise MalformedMessage("bad_kind", repr(kind))
    return obj


def _field(obj: dict[str, Any], name: str, types: type | tuple[type, ...]) -> Any:
    value = obj.get(name)
    # bool is an int in Python; a header saying width=True is still wrong
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise MalformedMessage("bad_header", f"{name}={value!r}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def header_from_map(obj: dict[str, Any]) -> FrameHeader:
    """Validate a frame header map (already version-checked by :func:`unpack`)."""
    if obj.get("kind") != "frame":
        raise MalformedMessage("bad_kind", f"expected frame, got {obj.get('kind')!r}")
    header = FrameHeader(
        camera=_field(obj, "camera", str),
        seq=_field(obj, "seq", int),
        ts_ns=_field(obj, "ts_ns", int),
        pts=obj.get("pts") if isinstance(obj.get("pts"), (int, float)) else None,
        width=_field(obj, "width", int),
        height=_field(obj, "height", int),
        channels=_field(obj, "channels", int),
        dtype=_field(obj, "dtype", str),
        enc=_field(obj, "enc", str),
        live=bool(obj.get("live", True)),
        key=bool(obj.get("key", False)),
        dts=obj.get("dts") if isinstance(obj.get("dts"), (int, float)) else None,
        extradata=obj.get("extradata") if isinstance(obj.get("extradata"), bytes) else None,
    )
    if not header.camera or header.seq < 0:
        raise MalformedMessage("bad_header", "empty camera or negative seq")
    if not (0 < header.width <= MAX_SIDE and 0 < header.height <= MAX_SIDE):
        raise MalformedMessage("bad_header", f"size {header.width}x{header.height}")
    if header.channels not in (1, 3, 4) or header.dtype not in DTYPES:
        raise MalformedMessage("bad_header", f"{header.channels} channels of {header.dtype}")
    if header.enc not in ENCODINGS and header.enc not in PACKET_ENCODINGS:
        raise MalformedMessage("bad_encoding", header.enc)
    return header


def peek_frame(parts: Sequence[Buffer]) -> FrameHeader:
    """Check a frame's header and part count without touching the pixels (for relays)."""
    if len(parts) != 2:
        raise MalformedMessage("bad_part_count", f"{len(parts)} parts")
    header = header_from_map(unpack(parts[0]))
    if header.enc == "raw" and len(parts[1]) != header.raw_size:
        raise MalformedMessage("bad_size", f"{len(parts[1])} bytes, header says {header.raw_size}")
    return header


def encode_frame(header: FrameHeader, image: np.ndarray, jpeg_quality: int = 90) -> list[Buffer]:
    """Build the two parts of a frame; ``header.enc`` chooses the payload's encoding."""
    image = np.ascontiguousarray(image)
    if image.shape != header.shape or image.dtype != np.dtype(header.dtype):
        raise ValueError(f"image {image.shape} {image.dtype} does not match header {header.shape}")
    head = msgpack.packb({"v": PROTOCOL_VERSION, "kind": "frame", **asdict(header)}, use_bin_type=True)
    if header.enc == "raw":
        payload: Buffer = memoryview(image).cast("B")
    elif header.enc == "lz4":
        payload = lz4.block.compress(image, store_size=False)
    elif header.enc == "jpeg":
        payload = encode_jpeg(image, jpeg_quality)
    else:
        raise ValueError(f"unknown encoding {header.enc!r}")
    return [head, payload]


def encode_packet(header: FrameHeader, data: Buffer) -> list[Buffer]:
    """Build the two parts of a passed-through compressed packet (``header.enc`` h264 or hevc)."""
    if not header.is_packet:
        raise ValueError(f"{header.enc!r} is not a packet encoding")
    head = msgpack.packb({"v": PROTOCOL_VERSION, "kind": "frame", **asdict(header)}, use_bin_type=True)
    return [head, data]


def decode_frame(parts: Sequence[Buffer]) -> tuple[FrameHeader, np.ndarray]:
    """Rebuild a frame; ``raw`` payloads become a read-only array over the received buffer."""
    header = peek_frame(parts)
    if header.is_packet:
        raise MalformedMessage("not_pixels", f"{header.enc} packet where pixels were expected")
    payload = parts[1]
    dtype = DTYPES[header.dtype]
    if header.enc == "raw":
        image = np.frombuffer(payload, dtype=dtype)
    elif header.enc == "lz4":
        try:
            data = lz4.block.decompress(payload, uncompressed_size=header.raw_size)
        except lz4.block.LZ4BlockError as exc:
            raise MalformedMessage("bad_payload", f"lz4: {exc}") from None
        if len(data) != header.raw_size:
            raise MalformedMessage("bad_size", f"lz4 gave {len(data)} bytes")
        image = np.frombuffer(data, dtype=dtype)
    else:
        flag = cv2.IMREAD_GRAYSCALE if header.channels == 1 else cv2.IMREAD_COLOR
        image = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), flag)
        if image is None:
            raise MalformedMessage("bad_payload", "JPEG does not decode")
        if image.shape != header.shape:
            raise MalformedMessage("bad_size", f"JPEG is {image.shape}, header says {header.shape}")
        return header, image
    return header, image.reshape(header.shape)


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    """One JPEG encoder for snapshots and ``jpeg`` frames alike."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
