"""The ring: per camera, frames into fixed-duration segment files (recorder.retention takes old
files out).

Frames come from the extractors' publish streams (common.wire). For each camera the ring
- refuses a frame over ``max_frame_bytes`` (``--max-frame-bytes``) from its header alone, before
  anything is decompressed (counted as ``malformed/too_large``);
- checks the header's seq: a hole is frames lost before the recorder, counted and written into
  the index row of the segment it falls in (``gaps``), never hidden; a seq that goes back means
  the extractor restarted (counted as ``restarts``). Neither starts a file: a forged or jumping
  seq costs a count, not a file. A camera's first frame after the recorder starts continues from
  the last seq the index holds for it (``last_seq`` of its newest file), so the frames published
  while the recorder was down are a gap like any other;
- takes the capture time as it comes unless it is more than ``max_skew_s`` from the wall clock:
  then it is counted (``clock_skew/<camera>``) and the wall clock used instead;
- cuts a new segment when ``segment_s`` of capture time has passed since the segment's first
  frame, or it holds ``max_segment_bytes`` (for passed-through packets, at the next key frame,
  since a file must start with one), or the stream changed (size, codec, a reset timeline);
- encodes pixel frames with one libx264 encoder per open file, whose memory grows with the frame's
  size (about ENCODER_BYTES_PER_PIXEL a pixel): the encoders open at once are held within
  ``encode_memory`` (``--encode-memory``), all cameras together, so neither frame size nor camera
  count grows the recorder without bound. A camera whose new file would go past it is not
  recorded until another's file closes, its frames counted as ``dropped/<camera>/encode_memory``
  and as gaps. Passed-through packets are never decoded and cost no encoder;
- after a hole in a packet stream, drops packets up to the next key frame (nothing before it
  can be decoded) and counts them as ``dropped/await_key``.

A write that fails (a full disk: the file, or the index) closes the segment; that frame and every
frame for the next ``WRITE_RETRY_S`` are counted as ``dropped/<camera>/write_error`` and as gaps
(in the next segment's row), the error is logged once per interval, and a new segment is tried
after that, so recording resumes by itself when space comes back. When the free-space floor cannot
be met with the ring's own files, recording pauses (recorder.pause): open files are closed, and
frames are counted as ``dropped/<camera>/paused`` and as gaps until space returns. A camera whose
record switch is off (recorder.record_switch) is not recorded: its frames are counted as
``dropped/<camera>/switched_off``, not as gaps (none was lost that was meant to be kept). At most
``max_cameras`` cameras are recorded; frames of any beyond them are counted under
``dropped/*/max_cameras``.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import msgspec

from camwire.common.settings import shared
from camwire.common import pixels, wire
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter
from camwire.common.paths import safe_name
from camwire.recorder.index import Index
from camwire.recorder.keep import Keeper
from camwire.recorder.pause import Pause, judge
from camwire.recorder.recovery import recover
from camwire.recorder.retention import DEFAULT_MAX_SKEW_S, Retention, capture_time
from camwire.recorder.segment import FrameSegment, PacketSegment, SegmentFile, segment_name

WRITE_RETRY_S = 1.0  # after a failed write, how long a camera's frames are dropped before a new file is tried
DEFAULT_MAX_CAMERAS, DEFAULT_MAX_SEGMENT_BYTES = shared.MAX_CAMERAS, shared.MAX_SEGMENT_BYTES  # the settings' defaults
# what one open libx264 encoder (veryfast, zerolatency) holds per pixel of its frames, the frame
# being converted included (25-31 bytes measured from 1080p to 20 MP; rounded up), and whatever
# its size (0.9 MB measured for 64x48, its threads' stacks not counted)
ENCODER_BYTES_PER_PIXEL = 32
ENCODER_FIXED_BYTES = 1 << 20
# one encoder of an 8K (or 36 MP) camera, or 23 of 1080p: more than one main loop feeds at 25 fps
DEFAULT_ENCODE_MEMORY = shared.ENCODE_MEMORY
OVER_LIMIT = "*"  # the camera label for frames of cameras beyond --max-cameras (no real camera has it)
WRITE_ERRORS = (av.error.FFmpegError, OSError, sqlite3.OperationalError)


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
    blocked_until: float = 0.0  # after a failed write: no new file before this (monotonic)


@dataclass
class _Unfinished:
    """A closed file whose index row could not be completed yet (a full disk)."""

    seg_id: int
    end_ns: int
    size: int
    frames: int
    gaps: int
    last_seq: int | None


class Ring:
    def __init__(self, root: Path, index: Index, keeper: Keeper, retention: Retention, segment_s: float,
                 encoding: Encoding, counters: Counters, log, repeats: RepeatLimiter,
                 max_cameras: int = DEFAULT_MAX_CAMERAS, max_skew_s: float = DEFAULT_MAX_SKEW_S,
                 max_frame_bytes: int = wire.DEFAULT_MAX_FRAME_BYTES,
                 max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES, encode_memory: int = DEFAULT_ENCODE_MEMORY,
                 pause: Pause | None = None) -> None:
        self.root, self.index, self.keeper, self.retention = root, index, keeper, retention
        self.max_frame_bytes, self.max_segment_bytes = max_frame_bytes, max_segment_bytes
        self.encode_memory = encode_memory
        self.encoding_bytes = 0  # what the open FrameSegments' encoders hold, estimated (encoder_bytes)
        self.pause = pause if pause is not None else Pause(counters, log, notify=False)
        self.off: set[str] = set()  # cameras whose record switch is off (recorder.record_switch)
        self.segment_s = segment_s
        self.encoding = encoding
        self.counters, self.log, self.repeats = counters, log, repeats
        self.max_cameras = max_cameras
        self.max_skew_ns = int(max_skew_s * 1e9)
        self.cameras: dict[str, CameraRecording] = {}
        self.ended: set[str] = set()  # cameras whose source reached its end
        self._unfinished: list[_Unfinished] = []
        self._recovered = False

    # -- frames -------------------------------------------------------------------------------

    def on_frame(self, parts: list) -> None:
        header = wire.peek_frame(parts, self.max_frame_bytes)  # raises MalformedMessage before anything is touched
        cam = self._camera(header.camera)
        if cam is None:
            return
        cam.last_seen = time.monotonic()
        self.ended.discard(header.camera)
        ts_ns, skewed = capture_time(header.ts_ns, time.time_ns(), self.max_skew_ns)
        if skewed:
            self.counters.add("clock_skew", header.camera)
            self.repeats(f"skew:{header.camera}", "capture time far from the wall clock; the wall clock is used",
                         camera=header.camera, ts_ns=header.ts_ns, max_skew_s=self.max_skew_ns / 1e9)
            header = msgspec.structs.replace(header, ts_ns=ts_ns)
        self._account_seq(cam, header)
        self.pause.camera(cam.name)  # told even while off: the sink answers with its record switch
        if cam.name in self.off:  # switched off on purpose: nothing lost, so no gap
            self.counters.add("dropped", cam.name, "switched_off")
            return
        if self.pause.paused:
            self._lost(cam, "paused")
            return
        if cam.blocked_until > cam.last_seen:
            self._lost(cam, "write_error")
            return
        try:
            refused = self._write(cam, header, parts)
            if refused == "await_key":  # not a gap: the frame came, but nothing could decode it
                self.counters.add("dropped", header.camera, "await_key")
                return
            if refused is not None:
                self._lost(cam, refused)
                return
        except WRITE_ERRORS as exc:
            self._write_failed(cam, header, exc)
            return
        cam.segment.gaps += cam.pending_gaps
        cam.pending_gaps = 0
        cam.last_ts_ns = max(cam.last_ts_ns, header.ts_ns)
        self.counters.add("written", header.camera)

    def _camera(self, name: str) -> CameraRecording | None:
        """The camera's state, made on its first message; None beyond ``max_cameras`` (counted)."""
        cam = self.cameras.get(name)
        if cam is None:
            if len(self.cameras) >= self.max_cameras and not self._forget_one():
                self.counters.add("dropped", OVER_LIMIT, "max_cameras")
                self.repeats("max-cameras", "more cameras than --max-cameras; this one is not recorded",
                             camera=name, max_cameras=self.max_cameras)
                return None
            cam = self.cameras[name] = CameraRecording(name, expect=self._resume_seq(name))
        return cam

    def _resume_seq(self, camera: str) -> int | None:
        """The seq a camera's stream goes on from: one past the last the index holds for it (a
        recorder restarted), so what was published meanwhile is counted; None when not known."""
        try:
            last = self.index.last_seq(camera)
        except sqlite3.OperationalError:  # the index does not open yet (a full disk): not known
            return None
        return None if last is None else last + 1

    def _forget_one(self) -> bool:
        """Make room by forgetting the camera idle longest, if one has no open file and has been
        idle for several segments (a camera renamed or removed long ago)."""
        idle = [c for c in self.cameras.values() if c.segment is None]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.last_seen)
        if time.monotonic() - oldest.last_seen < max(10 * self.segment_s, 60.0):
            return False
        del self.cameras[oldest.name]
        self.ended.discard(oldest.name)
        return True

    def _lost(self, cam: CameraRecording, reason: str) -> None:
        """A frame that reached the recorder and could not be recorded: dropped, and a gap."""
        self.counters.add("dropped", cam.name, reason)
        self.counters.add("gaps", cam.name)
        cam.pending_gaps += 1

    def _write_failed(self, cam: CameraRecording, header: wire.FrameHeader, exc: Exception) -> None:
        self._lost(cam, "write_error")
        self.repeats(f"write:{cam.name}:{type(exc).__name__}", "write failed; segment closed, retrying",
                     level="error", camera=cam.name, error=f"{type(exc).__name__}: {exc}"[:300],
                     retry_in_s=WRITE_RETRY_S)
        self.close_segment(cam)
        cam.await_key = cam.await_key or header.is_packet
        if isinstance(exc, (OSError, sqlite3.OperationalError)):  # the disk, not a packet the muxer refused
            cam.blocked_until = time.monotonic() + WRITE_RETRY_S
            self.enforce_retention()  # the free-space floor may make room at once

    def _write(self, cam: CameraRecording, header: wire.FrameHeader, parts: list) -> str | None:
        """Write one frame; None when written, else why not (a ``dropped`` reason)."""
        if header.is_packet:
            if not self._place_packet(cam, header):
                return "await_key"
            cam.segment.write(header, parts[1])
            return None
        seg = cam.segment
        if seg is None or not isinstance(seg, FrameSegment) or not seg.continues(header) or self._due(seg, header):
            self.close_segment(cam)  # its encoder's memory is given back before a new one is asked for
            if not self._encoder_fits(cam, header):
                return "encode_memory"
            _, image = pixels.decode_frame(parts, self.max_frame_bytes)
            self._cut(cam, header)
        else:
            _, image = pixels.decode_frame(parts, self.max_frame_bytes)
        cam.segment.write(header, image)
        return None

    def _due(self, seg: SegmentFile, header: wire.FrameHeader) -> bool:
        """Whether a file is due to be cut: by time or by size, never by a seq."""
        return seg.elapsed_s(header.ts_ns) >= self.segment_s or seg.bytes >= self.max_segment_bytes

    def _encoder_fits(self, cam: CameraRecording, header: wire.FrameHeader) -> bool:
        """Whether an encoder for ``header``'s frames fits in ``encode_memory`` beside those open."""
        used, need = self.encoding_bytes, encoder_bytes(header.width, header.height)
        if used + need <= self.encode_memory:
            return True
        self.repeats(f"encode-memory:{cam.name}", "no encoder for this camera within --encode-memory; its frames "
                     "are counted, not recorded, until another camera's file closes", camera=cam.name,
                     width=header.width, height=header.height, need=need, used=used, encode_memory=self.encode_memory)
        return False

    def _account_seq(self, cam: CameraRecording, header: wire.FrameHeader) -> None:
        if cam.expect is not None and header.seq > cam.expect:
            lost = header.seq - cam.expect
            self.counters.add("gaps", header.camera, n=lost)
            cam.pending_gaps += lost
            cam.await_key = header.is_packet  # a packet stream cannot be decoded across a hole
            self.repeats(f"lost:{header.camera}", "frames lost before the recorder", camera=header.camera,
                         lost=lost, expected=cam.expect, got=header.seq)
        elif cam.expect is not None and header.seq < cam.expect:
            # the extractor restarted (or a forged seq): counted; the file goes on unless the
            # stream itself changed (PacketSegment.continues, FrameSegment.continues)
            self.counters.add("restarts", header.camera)
            self.repeats(f"restart:{header.camera}", "camera stream restarted", level="info", camera=header.camera,
                         seq=header.seq, expected=cam.expect)
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
        if not continues or self._due(seg, header):
            self._cut(cam, header)
        return True

    def _cut(self, cam: CameraRecording, first: wire.FrameHeader) -> None:
        self.close_segment(cam)
        folder = self.root / safe_name(cam.name)
        path = folder / segment_name(first.ts_ns)
        n = 1
        while path.exists():  # the same millisecond after a restart
            path, n = folder / segment_name(first.ts_ns, n), n + 1
        try:
            if first.is_packet:
                seg: SegmentFile = PacketSegment(path, first)
            else:
                seg = FrameSegment(path, first, self.encoding.preset, self.encoding.crf, self.encoding.gop)
        except WRITE_ERRORS:
            path.unlink(missing_ok=True)
            raise
        try:
            cam.seg_id = self.index.open_segment(cam.name, first.ts_ns, str(path.relative_to(self.root)), first.enc,
                                                 first.seq)
        except sqlite3.OperationalError:
            _discard(seg)
            raise
        cam.segment = seg
        if isinstance(seg, FrameSegment):
            self.encoding_bytes += encoder_bytes(seg.width, seg.height)
        self.log.info("segment started", camera=cam.name, path=str(path.relative_to(self.root)))

    def close_segment(self, cam: CameraRecording) -> None:
        """Finalise the camera's open file, index it, and let kept events take it."""
        seg, cam.segment = cam.segment, None
        if seg is None:
            return
        if isinstance(seg, FrameSegment):
            self.encoding_bytes -= encoder_bytes(seg.width, seg.height)
        try:
            size = seg.close()
        except WRITE_ERRORS as exc:
            self.counters.add("errors", "close")
            self.repeats(f"close:{type(exc).__name__}", "segment did not close cleanly", level="error",
                         camera=cam.name, error=str(exc)[:300])
            size = seg.path.stat().st_size if seg.path.exists() else 0
        if seg.frames == 0:  # nothing reached the file (its first write failed): neither file nor row stays
            seg.path.unlink(missing_ok=True)
            self._index_write(self.index.delete_segment, cam.seg_id)
            return
        self._unfinished.append(_Unfinished(cam.seg_id, seg.end_ns, size, seg.frames, seg.gaps, seg.last_seq))
        self.counters.add("segments", cam.name)
        self.tick()
        self._keep(cam.name, cam.last_ts_ns, None, ended=False)
        if not self.pause.paused:  # paused, nothing is written: the housekeeping rounds look for space
            self.enforce_retention()

    # -- control messages -----------------------------------------------------------------------

    def on_control(self, msg: wire.Status | wire.Eos) -> None:
        if isinstance(msg, wire.Status):
            cam = self.cameras.get(msg.camera)  # a status alone makes no camera state
            if cam is not None and msg.state == "offline":
                self.close_segment(cam)
            return
        cam = self._camera(msg.camera)
        if cam is not None:
            if cam.expect is not None and msg.last_seq >= cam.expect:
                lost = msg.last_seq - cam.expect + 1  # the tail of the stream never arrived
                self.counters.add("gaps", msg.camera, n=lost)
                if cam.segment is not None:
                    cam.segment.gaps += lost
            self.close_segment(cam)
            cam.expect = None  # a file extractor started again begins at seq 0
            self._keep(msg.camera, cam.last_ts_ns, None, ended=True)
            self.ended.add(msg.camera)
            self.log.info("camera ended", camera=msg.camera)

    def on_event(self, event: wire.Event) -> None:
        camera = self.keeper.on_event(event)
        if camera is not None:
            cam = self.cameras.get(camera)
            open_start = cam.segment.start_ns if cam and cam.segment else None
            self._keep(camera, cam.last_ts_ns if cam else 0, open_start, ended=False)

    def _keep(self, camera: str, recorded_to_ns: int, open_start_ns: int | None, ended: bool) -> None:
        try:
            self.keeper.update(camera, recorded_to_ns, open_start_ns, ended)
        except WRITE_ERRORS as exc:  # still pending in the index: done when a later segment closes
            self.repeats(f"keep:{type(exc).__name__}", "kept clip not updated; tried again later", level="error",
                         camera=camera, error=str(exc)[:300])

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
        self.tick()

    # -- the index, retention and recovery ----------------------------------------------------------

    def tick(self) -> None:
        """Complete the index rows a full disk held back; recover, once the index opens."""
        while self._unfinished:
            u = self._unfinished[0]
            if not self._index_write(self.index.close_segment, u.seg_id, u.end_ns, u.size, u.frames, u.gaps,
                                     u.last_seq):
                return
            self._unfinished.pop(0)
        if not self._recovered:
            self.recover()

    def enforce_retention(self) -> None:
        try:
            self.retention.enforce()
            self.keeper.enforce()
        except WRITE_ERRORS as exc:
            self.repeats(f"retention:{type(exc).__name__}", "retention round failed; tried again later",
                         level="error", error=str(exc)[:300])
        r = self.retention
        paused = judge(self.pause.paused, r.floor_met, r.free, r.size, r.limits.min_free)
        reason = f"{r.free / 1e6:.1f} MB free of {r.size / 1e6:.1f} MB; --min-free {r.limits.min_free:.0%}"
        if self.pause.change(paused, reason, sorted(self.cameras)) and paused:
            self.close_all()  # what was recorded is complete on disk, and its encoders' memory given back

    def _index_write(self, fn, *args) -> bool:
        try:
            fn(*args)
        except sqlite3.OperationalError as exc:
            self.counters.add("errors", "index")
            self.repeats("index", "index not written; tried again later", level="error", error=str(exc))
            return False
        return True

    def recover(self) -> None:
        """Complete the index rows of files a killed recorder left open, from the files themselves.

        A file is deleted only when it reads and holds no frame (the recorder died before its
        first cluster); one that cannot be read keeps its row, and is logged and counted."""
        ours = {c.seg_id for c in self.cameras.values() if c.segment is not None} | \
            {u.seg_id for u in self._unfinished}  # this run's files, when the index opened late
        try:
            recover(self.root, self.index, ours, self.counters, self.log, self.repeats)
        except sqlite3.OperationalError as exc:
            self.repeats("recover", "index not writable yet; recovery waits", level="error", error=str(exc))
            return
        self._recovered = True


def encoder_bytes(width: int, height: int) -> int:
    """About what one open encoder of frames this size holds (FrameSegment encodes even sides)."""
    return (width & ~1) * (height & ~1) * ENCODER_BYTES_PER_PIXEL + ENCODER_FIXED_BYTES


def _discard(seg: SegmentFile) -> None:
    try:
        seg.container.close()
    except WRITE_ERRORS:
        pass
    seg.path.unlink(missing_ok=True)
