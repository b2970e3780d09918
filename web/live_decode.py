"""The live view's packet decoders (:class:`PacketDecoders`, web.live): one PyAV decoder per
watched camera of a packet stream (the extractor's H.264/HEVC passthrough), fed each packet as it
comes, started again at a key packet after a gap, a decode error or a time nobody watched; each
picture comes out as a ring :class:`web.live_ring.Frame` with the header of the packet that held it,
kept as the decoder gave it (YUV), scaled down to ``MAX_WIDTH`` when wider."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import av

from camwire.common import wire
from camwire.web.live_ring import Frame
from camwire.web.live_viewers import MAX_WIDTH

MAX_PENDING = 64  # packets in a decoder whose picture has not come out yet (B-frames delay a few)


@dataclass
class _Decoder:
    """A camera's packet decoder; ``epoch`` is the camera's watch epoch it was started in."""

    enc: str
    epoch: int
    ctx: av.CodecContext
    pending: dict[int, wire.FrameHeader] = field(default_factory=dict)  # seq -> header, until its picture
    last_seq: int = -1  # of the packet fed last: a gap (a packet lost on the way) restarts at a key packet


class PacketDecoders:
    """Each camera's packet decoder; the ZeroMQ thread's alone. ``count`` is the hub's counter
    (waiting_key, gaps, decode_errors)."""

    def __init__(self, count: Callable[[str], None]) -> None:
        self._by_camera: dict[str, _Decoder] = {}
        self._count = count

    def forget(self, camera: str) -> None:
        """Nobody watches ``camera``: its decoder would miss packets from here on."""
        self._by_camera.pop(camera, None)

    def decode(self, header: wire.FrameHeader, payload: wire.Buffer, epoch: int) -> list[Frame]:
        """Feed one H.264/HEVC packet to the camera's decoder; the pictures it gave, in output order.
        ``epoch``: the camera's watch epoch now (a decoder of an earlier one missed packets)."""
        camera = header.camera
        decoder = self._by_camera.get(camera)
        if decoder is not None and (decoder.epoch != epoch or decoder.enc != header.enc):
            decoder = None  # packets were missed while nobody watched, or the stream changed codec
        elif decoder is not None and header.seq != decoder.last_seq + 1:
            decoder = None  # a packet lost on the way (a full buffer): pictures until the next key would smear
            self._count("gaps")
        if decoder is None:
            if not header.key:
                self._by_camera.pop(camera, None)
                self._count("waiting_key")
                return []
            ctx = av.CodecContext.create(header.enc, "r")
            ctx.thread_type = "SLICE"  # frame threads would hold pictures back a frame each
            if header.extradata:
                ctx.extradata = header.extradata
            decoder = self._by_camera[camera] = _Decoder(header.enc, epoch, ctx)
        decoder.last_seq = header.seq
        packet = av.Packet(bytes(payload))
        packet.pts = header.seq  # comes back on the picture: which header it belongs to (B-frames reorder)
        decoder.pending[header.seq] = header
        while len(decoder.pending) > MAX_PENDING:
            del decoder.pending[next(iter(decoder.pending))]
        try:
            pictures = decoder.ctx.decode(packet)
        except av.FFmpegError:
            self._by_camera.pop(camera, None)  # start again from the next key packet
            self._count("decode_errors")
            return []
        frames = []
        for picture in pictures:
            held = decoder.pending.pop(picture.pts, None) if picture.pts is not None else None
            frames.append(Frame(held or header, picture=_kept(picture)))
        return frames


def _kept(picture: av.VideoFrame) -> av.VideoFrame:
    """A decoded picture as the ring keeps it: as it came (YUV 4:2:0 from H.264/HEVC: 1.5 bytes a
    pixel, no work), or, wider than any viewer is sent, scaled down to ``MAX_WIDTH`` in YUV 4:2:0."""
    if picture.width <= MAX_WIDTH:
        return picture
    height = max(2, round(picture.height * MAX_WIDTH / picture.width / 2) * 2)
    return picture.reformat(width=MAX_WIDTH, height=height, format="yuv420p")
