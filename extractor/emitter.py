"""What one camera thread says, and how one decoded frame goes out, written once for a stream
(extractor.camera) and a polled feed (extractor.feed).

- CameraCounters: one camera's view of the daemon's counters.
- Emitter: the camera thread's sockets: its PUSH socket to the ventilator (with the watch on its
  peer) and, with ``--publish``, its PUSH socket to the process's publish relay; and, when the
  ventilator is on this host (``--shm``), the camera's shared-memory ring (common.shm): a frame's
  pixels go into a slot and only its header (with the slot's ShmRef) goes over the socket; when
  every slot is taken a live frame goes by the socket as before, counted ``shm/full``, and a
  file's frame waits for a slot as it waits for the socket. Control messages
  (Status, Eos) and a change of motion wait a little for room; heartbeats, frames and published
  frames never wait (a file not paced in real time excepted: its frames and its changes of motion
  wait for the pool), and every drop is counted (``dropped/<camera>/<reason>``).
- FrameStep: one decoded frame: motion found in it (on a small grey copy), the camera's sampling
  and motion gate, colour conversion only when the frame goes somewhere (resized once, in the same
  pass, to the camera's ``detect_size`` for the pool; the header's ``source`` then says the
  source's size, which results' boxes are scaled back to), then to the pool and to the relay,
  counted (``sent``, ``published``, ``skipped/no_motion``).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import msgspec
import numpy as np
import zmq

from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common import shm
from camwire.common.lifecycle import StopFlag
from camwire.common.pixels import encode_frame
from camwire.common.sockets import PeerWatch, send_nowait
from camwire.extractor.motion import MotionDetector, MotionGate
from camwire.extractor.sampling import Sampler
from camwire.extractor.source import SourceFrame
from camwire.extractor.spec import CameraSpec

CONTROL_SEND_TIMEOUT_MS = 2000
HEARTBEAT_SEND_TIMEOUT_MS = 100  # a heartbeat waits this long for room at most (see Emitter.send_heartbeat)
PEER_CHECK_S = 1.0  # how often the PUSH socket's peer is looked for (common.sockets.PeerWatch)
SLOT_WAIT_S = 0.005  # a file's frame waiting for a free slot looks again this often
SLOT_WAIT_MAX_S = 1.0  # ... and goes by the socket after this long
SOURCE_SHARE = 1 / 3  # a source ring takes at most this share of /dev/shm's free space (the pool's rings first)
CLOSE_WAIT_S = 2.0  # at close, how long the ring waits for readers to give back the slots they hold


class CameraCounters:
    """One camera's view of the daemon's counters: ``add("dropped", "hwm")`` counts
    ``dropped/<camera>/hwm``. They outlive the camera's threads, so a restart loses no count."""

    def __init__(self, counters: Counters, camera: str) -> None:
        self.counters, self.camera = counters, camera

    def add(self, key: str, *path: str, n: int = 1) -> None:
        self.counters.add(key, self.camera, *path, n=n)

    def get(self, key: str, *path: str) -> int:
        return self.counters.get(key, self.camera, *path)


class Emitter:
    """One camera thread's sockets, made and closed in that thread (``close``)."""

    def __init__(self, push: zmq.Socket, peer: PeerWatch, relay: zmq.Socket | None, counters: CameraCounters,
                 log: Any, stop: StopFlag, prev_sent: int | None, camera: str = "", shm_slots: int = 0,
                 source_slots: int = 0) -> None:
        self.push, self.peer, self.relay = push, peer, relay
        self.counters, self.log, self.stop = counters, log, stop
        self.camera, self.shm_slots, self.source_slots = camera, shm_slots, source_slots
        self.ring: shm.Ring | None = None  # made for the first frame, again when a frame outgrows it
        # the source frames of frames resized for detection (keep_source): overwritten in turn
        self.sources: shm.Ring | None = None
        self.slots_stuck = False  # a wait for a slot timed out, and no slot came free since
        self.prev_sent = prev_sent  # the seq last sent to the pool (FrameHeader.prev); None: unknown
        self.motion_said: wire.Motion | None = None  # the last change of the motion state, repeated
        self._peer_checked = 0.0

    def close(self) -> None:
        self.peer.close()
        self.push.close()
        if self.relay is not None:
            self.relay.close()
        self._close_ring()
        if self.sources is not None:  # nobody holds its slots: unlinked at once
            self.sources.close()
            self.sources = None

    def _close_ring(self) -> None:
        """Unlink the ring once its readers gave back what they hold (bounded: a frame still
        queued after that fails at its worker, counted there, as a socket's linger drops one)."""
        if self.ring is None:
            return
        deadline = time.monotonic() + CLOSE_WAIT_S
        while self.ring.free() < self.ring.slots and time.monotonic() < deadline:
            time.sleep(SLOT_WAIT_S)
        self.ring.close()
        self.ring = None

    def _to_ring(self, header: wire.FrameHeader, image: np.ndarray,
                 wait: bool) -> tuple[list | None, wire.ShmRef | None]:
        """The frame's parts with its pixels in the ring, and its slot ((None, None): it goes by
        the socket)."""
        if self.ring is None or self.ring.slot_bytes < image.nbytes:
            self._close_ring()
            try:
                self.ring = shm.Ring(self.camera, self.shm_slots, image.nbytes)
            except OSError as exc:  # no /dev/shm, or it is full: the socket, said once per ring tried
                self.counters.add("shm", "unavailable")
                self.log.warning("shared memory unavailable; frames go by the socket", error=str(exc))
                self.shm_slots = 0
                return None, None
        waited_until = time.monotonic() + (0.0 if self.slots_stuck else SLOT_WAIT_MAX_S)
        while (ref := self.ring.put(image)) is None:
            if not wait or self.stop.is_set() or time.monotonic() >= waited_until:
                # a file waits for a slot a while; when none comes back (a peer that never gives
                # slots back: a plain socket reader) the next full ring goes by the socket at once
                self.slots_stuck = self.slots_stuck or wait
                self.counters.add("shm", "full")
                return None, None
            time.sleep(SLOT_WAIT_S)  # a file not paced in real time waits for the pool, here as at the socket
        self.slots_stuck = False
        self.counters.add("shm", "used")
        return wire.frame_parts(msgspec.structs.replace(header, shm=ref), b""), ref

    def keep_source(self, image: np.ndarray) -> wire.ShmRef | None:
        """The source frame (YUV 4:2:0) of a frame going to the pool resized, into the source
        ring: its slots are never held (lease 0), each put overwrites the oldest, so the ring
        only ever keeps the last ``source_slots``; the sink copies one while it is there, for a
        snapshot it keeps at the source's resolution (FrameHeader.source_shm)."""
        if self.sources is None or self.sources.slot_bytes < image.nbytes:
            if self.sources is not None:
                self.sources.close()
                self.sources = None
            try:
                need, free = self.source_slots * image.nbytes, shm.free_bytes()
                if free is not None and need > free * SOURCE_SHARE:
                    raise OSError(f"{need} bytes of source frames would take more than a third of the "
                                  f"{free} free in {shm.DIRECTORY}")
                self.sources = shm.Ring(self.camera, self.source_slots, image.nbytes, lease_s=0.0)
            except (OSError, ValueError) as exc:  # /dev/shm full, small or absent: snapshots at the detection size
                self.counters.add("shm", "source_unavailable")
                self.log.warning("no shared memory for source frames; snapshots at the detection size "
                                 "(--source-slots)", error=str(exc))
                self.source_slots = 0
                return None
        return self.sources.put(image)

    def check_peer(self) -> None:
        if time.monotonic() - self._peer_checked >= PEER_CHECK_S:
            self._peer_checked = time.monotonic()
            self.peer.check()

    def send_control(self, message: wire.Message) -> None:
        """Status and end-of-stream are small and rare: wait a little for room rather than drop."""
        data = wire.pack(message)
        if not send_nowait(self.push, [data], CONTROL_SEND_TIMEOUT_MS):
            self.counters.add("dropped", "control")
            self.check_peer()
            self.log.warning("could not send control message", kind=type(message).__name__)
        if self.relay is not None:
            send_nowait(self.relay, [data], CONTROL_SEND_TIMEOUT_MS)

    def send_heartbeat(self, status: wire.Status) -> None:
        """The status again, and the motion state with it. Each waits a moment for room: the PUSH
        holds two messages (PUSH_HWM), so a frame and the status fill it, and a motion repeat sent
        right behind them found it full every time until ZeroMQ's I/O thread had moved them on (a
        restarted sink then never heard the motion again). No longer than that: the next
        heartbeat is seconds away, and a camera thread that waits decodes nothing."""
        if not send_nowait(self.push, [wire.pack(status)], HEARTBEAT_SEND_TIMEOUT_MS):
            self.counters.add("dropped", "status")
        if self.motion_said is not None and not send_nowait(self.push, [wire.pack(self.motion_said)],
                                                            HEARTBEAT_SEND_TIMEOUT_MS):
            self.counters.add("dropped", "motion")  # said again with the next heartbeat

    def say_motion(self, message: wire.Motion | None, wait: bool = False) -> None:
        """A change of the motion state, to the sink (not the recorder); repeated with every
        heartbeat. ``wait``: a file not paced in real time waits for room as its frames do (its
        whole run may be shorter than a heartbeat, and a start lost there was never told)."""
        if message is None:
            return
        self.motion_said = message
        self.log.info("motion started" if message.active else "motion ended", seq=message.seq)
        if wait and not self._wait_room():
            self.counters.add("dropped", "motion")  # stopping before the pool took it
            return
        if not send_nowait(self.push, [wire.pack(message)], CONTROL_SEND_TIMEOUT_MS):
            self.counters.add("dropped", "motion")

    def _wait_room(self) -> bool:
        """Until the PUSH socket has room (a file read as fast as the pool takes it); False when stopping."""
        while not self.push.poll(200, zmq.POLLOUT):
            self.check_peer()  # a wrong --push address would otherwise wait here without a word
            if self.stop.is_set():
                return False
        return True

    def send_frame(self, header: wire.FrameHeader, image: np.ndarray, block: bool,
                   source: Callable[[], np.ndarray | None] | None = None) -> None:
        """To the pool: a live frame only when the socket has room (else dropped and counted,
        before anything is encoded or written to the ring); a file's waits for room. ``source``:
        the source frame of a resized one, asked only when the frame goes through shared memory
        and a source ring is kept (keep_source)."""
        if block:
            # a file not paced in real time: waiting is what "as fast as the pipeline takes it" means
            if not self._wait_room():
                return
        elif not self.push.poll(0, zmq.POLLOUT):
            self.counters.add("dropped", "hwm")
            return
        parts, ref = None, None
        if self.shm_slots and header.enc == "raw":
            parts, ref = self._to_ring(header, np.ascontiguousarray(image), wait=block)
            # the source frame after the pool's ring has its slot (and its memory: the pool first)
            if ref is not None and self.source_slots and source is not None and (full := source()) is not None:
                header = msgspec.structs.replace(header, shm=ref, source_shm=self.keep_source(full))
                parts = wire.frame_parts(header, b"")
        if parts is None:
            parts = encode_frame(header, image)
        try:
            self.push.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.counters.add("sent")
        except zmq.Again:
            self.counters.add("dropped", "hwm")
            if ref is not None and self.ring is not None:
                self.ring.release(ref)  # nobody will read it: the slot is free again at once

    def publish(self, parts: list) -> None:
        """A frame or a packet to the publish relay (``--publish``); never waits."""
        assert self.relay is not None
        try:
            self.relay.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.counters.add("published")
        except zmq.Again:
            self.counters.add("dropped", "publish")


BT709 = 1  # AVCOL_SPC_BT709: a frame whose YUV is in BT.709 says so (PyAV's VideoFrame.colorspace)
# a camera's pixel_format as PyAV (swscale) names it
PYAV_FORMATS = {"bgr": "bgr24", "rgb": "rgb24", "gray": "gray", "yuv420": "yuv420p"}


def source_yuv(frame: Any) -> np.ndarray | None:
    """A decoded frame at its own size in YUV 4:2:0 (planes copied, no conversion when the
    decoder gave yuv420p, as H.264 and HEVC cameras do); None for odd sides, which it cannot have."""
    if frame.width % 2 or frame.height % 2:
        return None
    return frame.to_ndarray(format="yuv420p")


def detect_size(width: int, height: int, long_side: int | None) -> tuple[int, int] | None:
    """(width, height) scaled so the long side is ``long_side``, the aspect kept; None when the
    source is no larger (never scaled up) or no size is set."""
    if long_side is None or max(width, height) <= long_side:
        return None
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class FrameStep:
    """One decoded frame's way out, for a stream's connection or a feed's life: its own motion
    background, motion gate and sampling (``restart_sampling`` starts the sampling again: a feed's
    runs over each clip). ``publish_enc`` None: frames are not published (no relay, or the
    camera publishes its compressed packets instead)."""

    def __init__(self, spec: CameraSpec, out: Emitter, publish_enc: str | None,
                 subscribed: Callable[[], bool]) -> None:
        self.spec, self.out, self.publish_enc, self.subscribed = spec, out, publish_enc, subscribed
        self.sampler = Sampler(spec.sampling)
        self.detector = MotionDetector(spec.motion, spec.masks)
        self.gate = MotionGate(spec.name, spec.motion, spec.detect)
        self.live = True  # the last frame's: a file's motion waits for room as its frames do

    def restart_sampling(self) -> None:
        """The sampling starts again from the next frame (a feed's runs over each clip)."""
        self.sampler = Sampler(self.spec.sampling)

    def __call__(self, sf: SourceFrame, seq: int, t: float, ts_ns: int, live: bool, sample_t: float | None = None,
                 clip: str | None = None) -> None:
        """One decoded frame: motion, the sampling (at ``sample_t``, else ``t``) and the gate (at
        ``t``, the camera's timeline), then to the pool and the relay. A frame that is not
        ``live`` waits for room at the pool; a clip's frame carries ``clip`` and its index in it."""
        boxes = self.detector.boxes_of_frame(sf.frame)  # every frame decoded, on a small grey copy
        self.live = live
        self.out.say_motion(self.gate.update(boxes, t, ts_ns, seq), wait=not live)
        take = self.sampler.take(t if sample_t is None else sample_t)
        if take and not self.gate.wanted(t):
            take = False
            self.out.counters.add("skipped", "no_motion")
        publish_enc = self.publish_enc if self.publish_enc is not None and self.subscribed() else None
        if not take and publish_enc is None:
            return  # skipped before colour conversion: the cheapest a skip can be
        width, height = sf.frame.width, sf.frame.height
        size = detect_size(width, height, self.spec.detect_size)
        header = wire.FrameHeader(camera=self.spec.name, seq=seq, ts_ns=ts_ns, pts=sf.t, width=width, height=height,
                                  enc=self.spec.enc, live=live, key=sf.key, motion=boxes,
                                  prev=self.out.prev_sent if take else None, clip=clip,
                                  clip_index=None if clip is None else sf.index,
                                  matrix="bt709" if sf.frame.colorspace == BT709 else "bt601")
        pix = self.spec.pixel_format
        if pix == "yuv420" and any(side % 2 for side in size or (width, height)):
            # 4:2:0 needs even sides: a pixel less, and boxes scaled back to the source's as ever
            w, h = size or (width, height)
            size = (max(2, w - w % 2), max(2, h - h % 2))
        same = pix == "bgr" and size is None  # the pool's pixels are the published ones
        full = sf.frame.to_ndarray(format="bgr24") if publish_enc is not None or same else None
        if publish_enc is not None:  # the recorder and live views: the source's size, in BGR
            self.out.publish(encode_frame(header.with_enc(publish_enc), full))
        if take:
            self.gate.sent(t)
            if same:
                image = full
            else:  # scaled (to detect_size) in the colour conversion's own pass (swscale), once
                w, h = size or (width, height)
                image = sf.frame.to_ndarray(width=w, height=h, format=PYAV_FORMATS[pix], interpolation="AREA")
                header = msgspec.structs.replace(header, width=w, height=h, source=None if size is None else (width, height),
                                                 channels=3 if pix in ("bgr", "rgb") else 1, pix=pix)
            # a stream sends a live frame or drops it; a file not paced in real time, or a clip's
            # sampled frames, all go to the pool
            self.out.send_frame(header, image, block=not live,
                                source=None if size is None else lambda: source_yuv(sf.frame))
            self.out.prev_sent = seq

    def finish(self) -> None:
        """Motion on when the stream (or the feed) ends ends with it."""
        self.out.say_motion(self.gate.finish(), wait=not self.live)
