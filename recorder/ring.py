"""The ring: per camera, frames into fixed-duration segment files; old files out by age and size.

Frames come from the extractors' publish streams (see common.wire). For each camera the ring
- checks the header's seq: a hole is frames lost before the recorder, counted and written into
  the index row of the segment it falls in (``gaps``), never hidden; a seq that goes back means
  the extractor restarted, which starts a new segment;
- cuts a new segment when ``segment_s`` of capture time has passed since the segment's first
  frame (for passed-through packets, at the next key frame, since a file must start with one);
- after a hole in a packet stream, drops packets up to the next key frame (nothing before it
  can be decoded) and counts them as ``dropped/await_key``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

from common import wire
from common.counters import Counters
from common.paths import safe_name, utc_stamp
from recorder.index import Index, Segment
from recorder.keep import Keeper
from recorder.segment import FrameSegment, PacketSegment, SegmentFile


@dataclass
class Encoding:
    """How decoded frames are compressed into segments (passed-through packets are not touched)."""

    preset: str = "veryfast"
    crf: int = 23
    gop: int = 50


@dataclass
class CameraRecording:
    name: str
    segment: SegmentFile | None = None
    seg_id: int = 0
    expect: int | None = None  # next seq we should see
    pending_gaps: int = 0  # lost frames not yet written into a segment's row
    await_key: bool = False
    last_ts_ns: int = 0
    last_seen: float = field(default_factory=time.monotonic)


class Ring:
    def __init__(self, root: Path, index: Index, keeper: Keeper, segment_s: float, retain_s: float | None,
                 max_bytes: int | None, encoding: Encoding, counters: Counters, log) -> None:
        self.root, self.index, self.keeper = root, index, keeper
        self.segment_s, self.retain_s, self.max_bytes = segment_s, retain_s, max_bytes
        self.encoding = encoding
        self.counters = counters
        self.log = log
        self.cameras: dict[str, CameraRecording] = {}
        self.ended: set[str] = set()  # cameras whose source reached its end
        self.latest_ts_ns = 0

    # -- frames -------------------------------------------------------------------------------

    def on_frame(self, parts: list) -> None:
        header = wire.peek_frame(parts)  # raises MalformedMessage before anything is touched
        cam = self.cameras.setdefault(header.camera, CameraRecording(header.camera))
        cam.last_seen = time.monotonic()
        self.ended.discard(header.camera)
        self._account_seq(cam, header)
        self.latest_ts_ns = max(self.latest_ts_ns, header.ts_ns)
        try:
            if not self._write(cam, header, parts):
                self.counters.add("dropped", header.camera, "await_key")
                return
        except (av.error.FFmpegError, OSError) as exc:
            # a full disk or a packet the muxer refuses: this file ends here, the next starts clean
            self.counters.add("dropped", header.camera, "write_error")
            self.log.error("write failed; segment closed", camera=cam.name, error=str(exc))
            self.close_segment(cam)
            cam.await_key = header.is_packet
            return
        cam.segment.gaps += cam.pending_gaps
        cam.pending_gaps = 0
        cam.last_ts_ns = max(cam.last_ts_ns, header.ts_ns)
        self.counters.add("written", header.camera)

    def _write(self, cam: CameraRecording, header: wire.FrameHeader, parts: list) -> bool:
        if header.is_packet:
            if not self._place_packet(cam, header):
                return False
            cam.segment.write(header, parts[1])
            return True
        header, image = wire.decode_frame(parts)
        seg = cam.segment
        if seg is None or not isinstance(seg, FrameSegment) or not seg.continues(header) \
                or seg.elapsed_s(header.ts_ns) >= self.segment_s:
            self._cut(cam, header)
        cam.segment.write(header, image)
        return True

    def _account_seq(self, cam: CameraRecording, header: wire.FrameHeader) -> None:
        if cam.expect is not None and header.seq > cam.expect:
            lost = header.seq - cam.expect
            self.counters.add("gaps", header.camera, n=lost)
            cam.pending_gaps += lost
            cam.await_key = header.is_packet  # a packet stream cannot be decoded across a hole
            self.log.warning("frames lost before the recorder", camera=header.camera, lost=lost,
                             expected=cam.expect, got=header.seq)
        elif cam.expect is not None and header.seq < cam.expect:
            self.counters.add("restarts", header.camera)
            self.log.info("camera stream restarted", camera=header.camera, seq=header.seq)
            self.close_segment(cam)
            cam.await_key = header.is_packet
        cam.expect = header.seq + 1

    def _place_packet(self, cam: CameraRecording, header: wire.FrameHeader) -> bool:
        """Make sure a segment is open for this packet; False when it must be dropped."""
        seg = cam.segment
        continues = isinstance(seg, PacketSegment) and seg.continues(header)
        if not header.key:
            # nothing decodes without the key frame before it; a due cut waits for the next key
            return continues and not cam.await_key
        cam.await_key = False
        if not continues or seg.elapsed_s(header.ts_ns) >= self.segment_s:
            self._cut(cam, header)
        return True

    def _cut(self, cam: CameraRecording, first: wire.FrameHeader) -> None:
        self.close_segment(cam)
        folder = self.root / safe_name(cam.name)
        path = folder / f"{utc_stamp(first.ts_ns)}.mkv"
        n = 1
        while path.exists():  # the same millisecond after a restart
            path, n = folder / f"{utc_stamp(first.ts_ns)}-{n}.mkv", n + 1
        if first.is_packet:
            cam.segment = PacketSegment(path, first)
        else:
            cam.segment = FrameSegment(path, first, self.encoding.preset, self.encoding.crf, self.encoding.gop)
        cam.seg_id = self.index.open_segment(cam.name, first.ts_ns, str(path.relative_to(self.root)), first.enc)
        self.log.info("segment started", camera=cam.name, path=str(path.relative_to(self.root)))

    def close_segment(self, cam: CameraRecording) -> None:
        """Finalise the camera's open file, index it, and let kept events take it."""
        seg, cam.segment = cam.segment, None
        if seg is None:
            return
        try:
            size = seg.close()
        except (av.error.FFmpegError, OSError) as exc:
            self.counters.add("errors", "close")
            self.log.error("segment did not close cleanly", camera=cam.name, error=str(exc))
            size = seg.path.stat().st_size if seg.path.exists() else 0
        self.index.close_segment(cam.seg_id, seg.end_ns, size, seg.frames, seg.gaps)
        self.counters.add("segments", cam.name)
        self.keeper.update(cam.name, cam.last_ts_ns, None, ended=False)
        self.enforce_retention()

    # -- control messages -----------------------------------------------------------------------

    def on_control(self, msg: dict) -> None:
        camera = msg.get("camera")
        if not isinstance(camera, str):
            raise wire.MalformedMessage("bad_header", f"{msg['kind']} without camera")
        cam = self.cameras.setdefault(camera, CameraRecording(camera))
        if msg["kind"] == "eos":
            last = msg.get("last_seq")
            if isinstance(last, int) and cam.expect is not None and last >= cam.expect:
                lost = last - cam.expect + 1  # the tail of the stream never arrived
                self.counters.add("gaps", camera, n=lost)
                if cam.segment is not None:
                    cam.segment.gaps += lost
            self.close_segment(cam)
            cam.expect = None  # a file extractor started again begins at seq 0
            self.keeper.update(camera, cam.last_ts_ns, None, ended=True)
            self.ended.add(camera)
            self.log.info("camera ended", camera=camera)
        elif msg["kind"] == "status" and msg.get("state") == "offline":
            self.close_segment(cam)

    def on_event(self, event: dict) -> None:
        camera = self.keeper.on_event(event)
        if camera is not None:
            cam = self.cameras.get(camera)
            open_start = cam.segment.start_ns if cam and cam.segment else None
            self.keeper.update(camera, cam.last_ts_ns if cam else 0, open_start, ended=False)

    def close_idle(self, idle_s: float) -> None:
        """Finalise the files of cameras that have sent nothing for ``idle_s`` (a stalled source)."""
        now = time.monotonic()
        for cam in self.cameras.values():
            if cam.segment is not None and now - cam.last_seen > idle_s:
                self.log.info("camera idle; segment closed", camera=cam.name)
                self.close_segment(cam)

    def close_all(self) -> None:
        for cam in self.cameras.values():
            self.close_segment(cam)

    # -- retention and recovery -----------------------------------------------------------------

    def enforce_retention(self) -> None:
        """Delete ring files older than ``retain_s``, then the oldest until under ``max_bytes``.

        "Now" is the later of the wall clock and the newest capture time seen, so a file read
        faster than real time ages its segments by its own clock."""
        if self.retain_s is not None:
            now_ns = max(time.time_ns(), self.latest_ts_ns)
            for seg in self.index.expired(now_ns - int(self.retain_s * 1e9)):
                self._delete(seg, "age")
        if self.max_bytes is not None:
            for seg in self.index.over_budget(self.max_bytes):
                self._delete(seg, "bytes")

    def _delete(self, seg: Segment, reason: str) -> None:
        try:
            os.unlink(self.root / seg.path)
        except FileNotFoundError:
            pass
        self.index.delete_segment(seg.id)
        self.counters.add("deleted", reason)
        self.log.info("segment deleted", camera=seg.camera, path=seg.path, reason=reason)

    def recover(self) -> None:
        """Complete the index rows of files a killed recorder left open, from the files themselves."""
        for seg in self.index.open_segments():
            path = self.root / seg.path
            frames, last_ms = _probe(path)
            if frames == 0:
                path.unlink(missing_ok=True)
                self.index.delete_segment(seg.id)
                self.log.warning("empty segment from an earlier run removed", path=seg.path)
                continue
            step_ms = last_ms / max(1, frames - 1)
            end_ns = seg.start_ns + int((last_ms + step_ms) * 1e6)
            self.index.close_segment(seg.id, end_ns, path.stat().st_size, frames, seg.gaps)
            self.counters.add("recovered")
            self.log.info("segment recovered", path=seg.path, frames=frames)


def _probe(path: Path) -> tuple[int, int]:
    """Packets in a (possibly truncated) segment file, and its last timestamp in ms."""
    frames, last = 0, 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    frames += 1
                    last = max(last, int(packet.pts * packet.time_base * 1000))
    except (av.error.FFmpegError, OSError, IndexError):
        pass  # a file cut off mid-cluster reads up to the cut
    return frames, last
