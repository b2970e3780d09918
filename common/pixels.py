"""Pixel codecs for frames (common.wire carries them): raw, LZ4 and JPEG, the JPEG snapshots, and
a result's pixels (:func:`pack_pixels`, :class:`Pixels`: an LZ4 block a worker sends and the sink
turns into a JPEG only for what it keeps); and the one conversion between pixel formats
(:func:`convert`: BGR, RGB, grey, YUV 4:2:0, common.wire.PIXEL_FORMATS).

Apart from the framing, and OpenCV loaded only for a JPEG, so that a daemon that only relays
frames (the ventilator) or records them never loads it. Decoding never allocates more than the
frame's checked size: the header is validated and held to ``max_bytes``
(common.wire.peek_frame), and a JPEG's declared size read, before a byte is decompressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import lz4.block
import numpy as np

from camwire.common.wire import (DEFAULT_MAX_FRAME_BYTES, DTYPES, Buffer, FrameHeader, MalformedMessage, fits_format,
                                 frame_parts, peek_frame)

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
        if header.pix == "yuv420":
            raise ValueError("a JPEG frame cannot carry YUV 4:2:0 planes")
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
    elif header.pix == "yuv420":
        raise MalformedMessage("bad_format", "a JPEG frame cannot carry YUV 4:2:0 planes")
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


# -- pixel formats: a worker converts a frame to the format its detector takes, the sink a result's
# pixels to BGR for a JPEG. YUV 4:2:0 is limited range (common.wire.PIXEL_FORMATS), as a camera's
# decoder gives it (PyAV's yuv420p planes as decoded); OpenCV's I420 conversions are BT.601 limited
# range, FFmpeg's (PyAV) are used for BT.709: a detector and a snapshot see the colours the
# extractor's own conversion would have given, within a level or two.

# limited-range luma (16-235) to full-range grey (0-255), and back, as FFmpeg's scaler does
LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
FULL_TO_LIMITED = np.round(16 + np.arange(256) * 219 / 255).astype(np.uint8)

def yuv420_height(image: np.ndarray) -> int:
    """The picture's height of an I420 array (``height * 3 / 2`` rows)."""
    return image.shape[0] * 2 // 3


def convert(image: np.ndarray, src: str, dst: str, matrix: str = "bt601") -> np.ndarray:
    """``image`` (format ``src``) in format ``dst``; the same array when they are the same. Three
    channels in BGR or RGB, grey one channel (a 4-channel BGRA frame loses its alpha); YUV 4:2:0
    in the colour ``matrix`` (common.wire.YuvMatrix), its grey the Y plane stretched to full range."""
    if src == "gray" and image.ndim == 3:  # a grey frame that came as (h, w, 1)
        image = image[..., 0]
    if src == "bgr" and image.ndim == 2:
        src = "gray"  # a one-channel "bgr" frame is grey (common.wire.FrameHeader.format)
    if src == dst:
        return image
    import cv2  # as in encode_jpeg

    if src == "yuv420" and dst == "gray":
        return cv2.LUT(image[:yuv420_height(image)], LIMITED_TO_FULL)
    if src == "yuv420" and matrix == "bt709" and dst in ("bgr", "rgb"):
        import av  # OpenCV knows BT.601 only: FFmpeg's scaler, told the matrix

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="yuv420p")
        return frame.reformat(format=f"{dst}24", src_colorspace="ITU709").to_ndarray()

    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    code = _CODES.get((src, dst))
    if code is not None:
        return cv2.cvtColor(image, getattr(cv2, code))
    if dst == "yuv420":  # from grey: the picture with neutral chroma
        h, w = image.shape[:2]
        if h % 2 or w % 2:
            raise ValueError(f"YUV 4:2:0 needs even sides, not {w}x{h}")
        grey = image if src == "gray" else convert(image, src, "gray")
        return np.concatenate([cv2.LUT(grey, FULL_TO_LIMITED), np.full((h // 2, w), 128, np.uint8)])
    raise ValueError(f"no conversion from {src!r} to {dst!r}")


_CODES = {("bgr", "rgb"): "COLOR_BGR2RGB", ("rgb", "bgr"): "COLOR_RGB2BGR",
          ("bgr", "gray"): "COLOR_BGR2GRAY", ("rgb", "gray"): "COLOR_RGB2GRAY",
          ("gray", "bgr"): "COLOR_GRAY2BGR", ("gray", "rgb"): "COLOR_GRAY2RGB",
          ("yuv420", "bgr"): "COLOR_YUV2BGR_I420", ("yuv420", "rgb"): "COLOR_YUV2RGB_I420",
          ("bgr", "yuv420"): "COLOR_BGR2YUV_I420", ("rgb", "yuv420"): "COLOR_RGB2YUV_I420"}


# -- a result's pixels: classifier.detection packs them, the sink keeps them and encodes what it keeps --

def pack_pixels(image: np.ndarray, enc: str = "lz4", pix: str = "bgr") -> tuple[bytes, tuple[int, int, int]] | None:
    """A frame's pixels as a result carries them (its part 1 and ``Result.image``): the 8-bit array
    in its format ``pix`` (BGR, RGB, grey; YUV 4:2:0 stays so, half the bytes of BGR: the sink
    converts only what it keeps), raw (to a sink on this host: a copy costs less than any codec) or
    as an LZ4 block (between hosts), and (width, height, channels). Either is a copy: nothing of
    ``image`` (which may be a view of a shared-memory slot) is kept. BGRA loses its alpha (a
    snapshot shows none); None for pixels no snapshot is made of (16-bit)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        return None
    if pix == "yuv420":
        if image.ndim != 2:
            return None
        image = np.ascontiguousarray(image)
        data = image.tobytes() if enc == "raw" else lz4.block.compress(image, store_size=False)
        return data, (image.shape[1], yuv420_height(image), 1)
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
    pix: str = "bgr"  # their format (Result.image_pix); decode() gives BGR (or grey) whatever it is
    matrix: str = "bt601"  # of YUV pixels (Result.matrix)
    # where the source's own pixels may still be, for a frame resized for detection (the sink's
    # sink.source_frames.SourceFrame, with ``take()``): at_source()
    source: Any = None

    @classmethod
    def of(cls, image: tuple[int, int, int] | None, part: Buffer | None,
           max_bytes: int = DEFAULT_MAX_FRAME_BYTES, enc: str = "lz4", pix: str = "bgr",
           matrix: str = "bt601") -> "Pixels":
        """``Result.image`` and the part beside it; MalformedMessage ``bad_pixels`` when one comes
        without the other, the size is past ``max_bytes``, or the block's length cannot be an LZ4
        block of that size."""
        if image is None or part is None:
            raise MalformedMessage("bad_pixels", "a result's part 1 and its image field come together")
        if not fits_format(pix, image[2], image[0], image[1]):
            raise MalformedMessage("bad_pixels", f"{pix} pixels cannot be {image}")
        pixels = cls(part, *image, enc=enc, pix=pix, matrix=matrix)
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
        if self.pix == "yuv420":
            return self.width * self.height * 3 // 2
        return self.width * self.height * self.channels

    @property
    def shape(self) -> tuple[int, ...]:
        if self.pix == "yuv420":
            return (self.height * 3 // 2, self.width)
        return (self.height, self.width) if self.channels == 1 else (self.height, self.width, self.channels)

    def at_source(self) -> "Pixels":
        """These pixels at the source's resolution when they can still be had (copied now: a
        snapshot kept), else these."""
        if self.source is None:
            return self
        return self.source.take() or self

    def decode(self) -> np.ndarray:
        """The pixels in BGR (grey stays grey, the rest is converted: only what the sink keeps ever
        is); MalformedMessage ``bad_pixels`` unless the block decompresses to exactly the declared
        size (never more is allocated)."""
        image = self._raw()
        return image if self.pix in ("bgr", "gray") else convert(image, self.pix, "bgr", self.matrix)

    def _raw(self) -> np.ndarray:
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
