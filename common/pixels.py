"""Pixel codecs for frames (common.wire carries them): raw, LZ4 and JPEG, the JPEG snapshots, and
a result's pixels (:func:`pack_pixels`, :class:`Pixels`: an LZ4 block a worker sends and the sink
turns into a JPEG only for what it keeps).

Apart from the framing, and OpenCV loaded only for a JPEG, so that a daemon that only relays
frames (the ventilator) or records them never loads it. Decoding never allocates more than the
frame's checked size: the header is validated and held to ``max_bytes``
(common.wire.peek_frame), and a JPEG's declared size read, before a byte is decompressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import lz4.block
import numpy as np

from camwire.common.wire import DEFAULT_MAX_FRAME_BYTES, DTYPES, Buffer, FrameHeader, MalformedMessage, frame_parts, peek_frame

# LZ4 writes a run of N equal bytes in about N/255 bytes: a block shorter than a 256th of what it
# claims to hold cannot hold it (checked before anything is decompressed)
LZ4_MAX_RATIO = 256


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
        image = decode_jpeg(payload, header.channels, size=(header.width, header.height), max_bytes=max_bytes)
        if image is None:
            raise MalformedMessage("bad_payload", "not a JPEG of the size its header says")
        if image.shape != header.shape:
            raise MalformedMessage("bad_size", f"JPEG is {image.shape}, header says {header.shape}")
        return header, image
    return header, image.reshape(header.shape)


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    """One JPEG encoder for snapshots and ``jpeg`` frames alike."""
    import cv2  # here, not at the top: a daemon that never touches a JPEG never loads OpenCV

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data: Buffer) -> tuple[int, int] | None:
    """(width, height) as a JPEG's frame header declares it, read without decoding; None when
    the bytes are not a JPEG. A 600-byte JPEG may claim 20000x20000: ask before decoding."""
    view = bytes(data[:65536]) if len(data) > 65536 else bytes(data)
    if view[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(view):
        if view[i] != 0xFF:
            return None
        marker = view[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = int.from_bytes(view[i + 2:i + 4], "big")
        if marker in SOF_MARKERS:
            if i + 9 > len(view) or length < 8:
                return None
            height = int.from_bytes(view[i + 5:i + 7], "big")
            width = int.from_bytes(view[i + 7:i + 9], "big")
            return (width, height) if width and height else None
        if marker == 0xDA or length < 2:  # image data before any frame header: not a usable JPEG
            return None
        i += 2 + length
    return None


def decode_jpeg(data: Buffer, channels: int = 3, size: tuple[int, int] | None = None,
                max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> np.ndarray | None:
    """The image a JPEG holds, or None when the bytes are not one, declare another ``size`` than
    expected, or would decode to more than ``max_bytes``: nothing is allocated for a lie."""
    declared = jpeg_size(data)
    if declared is None or (size is not None and declared != size):
        return None
    if declared[0] * declared[1] * max(channels, 3) > max_bytes:
        return None
    import cv2  # as in encode_jpeg

    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)


# -- a result's pixels: classifier.detection packs them, the sink keeps them and encodes what it keeps --

def pack_pixels(image: np.ndarray, enc: str = "lz4") -> tuple[bytes, tuple[int, int, int]] | None:
    """A frame's pixels as a result carries them (its part 1 and ``Result.image``): the 8-bit BGR
    (or grey) array, raw (to a sink on this host: a copy costs less than any codec) or as an LZ4
    block (between hosts), and (width, height, channels). Either is a copy: nothing of ``image``
    (which may be a view of a shared-memory slot) is kept. BGRA loses its alpha (a snapshot shows
    none); None for pixels no snapshot is made of (16-bit)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        return None
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] != 3:
        return None
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else 3
    image = np.ascontiguousarray(image)
    data = image.tobytes() if enc == "raw" else lz4.block.compress(image, store_size=False)
    return data, (width, height, channels)


@dataclass(frozen=True, slots=True, eq=False)
class Pixels:
    """A result's pixels as the sink holds them until it writes a JPEG (sink.tracking,
    sink.store): the LZ4 block as it came and the size ``Result.image`` declares. Checked on
    arrival as far as can be without decompressing (:meth:`of`); decompressed, and checked whole,
    only when a JPEG is made of them (:meth:`decode`), which most never are."""

    data: Buffer
    width: int
    height: int
    channels: int
    enc: str = "lz4"  # or "raw" (Result.image_enc)

    @classmethod
    def of(cls, image: tuple[int, int, int] | None, part: Buffer | None,
           max_bytes: int = DEFAULT_MAX_FRAME_BYTES, enc: str = "lz4") -> "Pixels":
        """``Result.image`` and the part beside it; MalformedMessage ``bad_pixels`` when one comes
        without the other, the size is past ``max_bytes``, or the block's length cannot be an LZ4
        block of that size."""
        if image is None or part is None:
            raise MalformedMessage("bad_pixels", "a result's part 1 and its image field come together")
        pixels = cls(part, *image, enc=enc)
        size = pixels.raw_size
        if size > max_bytes:
            raise MalformedMessage("bad_pixels", f"{image} is {size} bytes, the limit {max_bytes}")
        if enc == "raw":
            if len(part) != size:
                raise MalformedMessage("bad_pixels", f"{len(part)} raw bytes, the image says {size}")
        elif not size // LZ4_MAX_RATIO <= len(part) <= lz4_bound(size):
            raise MalformedMessage("bad_pixels", f"{len(part)} bytes cannot be an LZ4 block of {size}")
        return pixels

    @property
    def raw_size(self) -> int:
        return self.width * self.height * self.channels

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width) if self.channels == 1 else (self.height, self.width, self.channels)

    def decode(self) -> np.ndarray:
        """The pixels; MalformedMessage ``bad_pixels`` unless the block decompresses to exactly
        the declared size (never more is allocated)."""
        if self.enc == "raw":  # its size was checked on arrival
            return np.frombuffer(self.data, dtype=np.uint8).reshape(self.shape)
        try:
            data = lz4.block.decompress(self.data, uncompressed_size=self.raw_size)
        except lz4.block.LZ4BlockError as exc:
            raise MalformedMessage("bad_pixels", f"lz4: {exc}") from None
        if len(data) != self.raw_size:
            raise MalformedMessage("bad_pixels", f"lz4 gave {len(data)} bytes, the image says {self.raw_size}")
        return np.frombuffer(data, dtype=np.uint8).reshape(self.shape)


def lz4_bound(size: int) -> int:
    """The most an LZ4 block of ``size`` bytes can take (LZ4_compressBound)."""
    return size + size // 255 + 16
