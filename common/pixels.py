"""Pixel codecs for frames (common.wire carries them): raw, LZ4 and JPEG, and the JPEG snapshots.

Apart from the framing so that a daemon that only relays frames (the ventilator) never loads
OpenCV. Decoding never allocates more than the frame's checked size: the header is validated and
held to ``max_bytes`` (common.wire.peek_frame) before a byte is decompressed.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import lz4.block
import numpy as np

from common.wire import DEFAULT_MAX_FRAME_BYTES, DTYPES, Buffer, FrameHeader, MalformedMessage, frame_parts, peek_frame


def encode_frame(header: FrameHeader, image: np.ndarray, jpeg_quality: int = 90) -> list[Buffer]:
    """Build the two parts of a frame; ``header.enc`` chooses the payload's encoding."""
    image = np.ascontiguousarray(image)
    if image.shape != header.shape or image.dtype != np.dtype(header.dtype):
        raise ValueError(f"image {image.shape} {image.dtype} does not match header {header.shape}")
    if header.enc == "raw":
        payload: Buffer = memoryview(image).cast("B")
    elif header.enc == "lz4":
        payload = lz4.block.compress(image, store_size=False)
    elif header.enc == "jpeg":
        payload = encode_jpeg(image, jpeg_quality)
    else:
        raise ValueError(f"unknown encoding {header.enc!r}")
    return frame_parts(header, payload)


def encode_packet(header: FrameHeader, data: Buffer) -> list[Buffer]:
    """Build the two parts of a passed-through compressed packet (``header.enc`` h264 or hevc)."""
    if not header.is_packet:
        raise ValueError(f"{header.enc!r} is not a packet encoding")
    return frame_parts(header, data)


def decode_frame(parts: Sequence[Buffer], max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> tuple[FrameHeader, np.ndarray]:
    """Rebuild a frame; ``raw`` payloads become a read-only array over the received buffer."""
    header = peek_frame(parts, max_bytes)
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
        image = decode_jpeg(payload, header.channels)
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


def decode_jpeg(data: Buffer, channels: int = 3) -> np.ndarray | None:
    """The image a JPEG holds, or None when the bytes are not one (a snapshot is checked so)."""
    if len(data) < 4 or bytes(data[:2]) != b"\xff\xd8":
        return None
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
