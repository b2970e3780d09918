"""What one camera thread says, and how one decoded frame goes out, written once for a stream
(extractor.camera) and a polled feed (extractor.feed).

- CameraCounters: one camera's view of the daemon's counters.
- Emitter: the camera thread's sockets: its PUSH socket to the ventilator (with the watch on its
  peer) and, with ``--publish``, its PUSH socket to the process's publish relay. Control messages
  (Status, Eos) wait a little for room; heartbeats, motion, frames and published frames never
  wait (a file not paced in real time excepted: its frames wait for the pool), and every drop is
  counted (``dropped/<camera>/<reason>``).
- FrameStep: one decoded frame: motion found in it (on a small grey copy), the camera's sampling
  and motion gate, colour conversion only when the frame goes somewhere, then to the pool and to
  the relay, counted (``sent``, ``published``, ``skipped/no_motion``).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import zmq

from camwire.common import wire
from camwire.common.counters import Counters
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
                 log: Any, stop: StopFlag, prev_sent: int | None) -> None:
        self.push, self.peer, self.relay = push, peer, relay
        self.counters, self.log, self.stop = counters, log, stop
        self.prev_sent = prev_sent  # the seq last sent to the pool (FrameHeader.prev); None: unknown
        self.motion_said: wire.Motion | None = None  # the last change of the motion state, repeated
        self._peer_checked = 0.0

    def close(self) -> None:
        self.peer.close()
        self.push.close()
        if self.relay is not None:
            self.relay.close()

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

    def say_motion(self, message: wire.Motion | None) -> None:
        """A change of the motion state, to the sink (not the recorder); repeated with every heartbeat."""
        if message is None:
            return
        self.motion_said = message
        self.log.info("motion started" if message.active else "motion ended", seq=message.seq)
        if not send_nowait(self.push, [wire.pack(message)], CONTROL_SEND_TIMEOUT_MS):
            self.counters.add("dropped", "motion")

    def send_frame(self, header: wire.FrameHeader, image: np.ndarray, block: bool) -> None:
        parts = encode_frame(header, image)
        if block:
            # a file not paced in real time: waiting is what "as fast as the pipeline takes it" means
            while not self.push.poll(200, zmq.POLLOUT):
                self.check_peer()  # a wrong --push address would otherwise wait here without a word
                if self.stop.is_set():
                    return
        try:
            self.push.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.counters.add("sent")
        except zmq.Again:
            self.counters.add("dropped", "hwm")

    def publish(self, parts: list) -> None:
        """A frame or a packet to the publish relay (``--publish``); never waits."""
        assert self.relay is not None
        try:
            self.relay.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.counters.add("published")
        except zmq.Again:
            self.counters.add("dropped", "publish")


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

    def restart_sampling(self) -> None:
        """The sampling starts again from the next frame (a feed's runs over each clip)."""
        self.sampler = Sampler(self.spec.sampling)

    def __call__(self, sf: SourceFrame, seq: int, t: float, ts_ns: int, live: bool, sample_t: float | None = None,
                 clip: str | None = None) -> None:
        """One decoded frame: motion, the sampling (at ``sample_t``, else ``t``) and the gate (at
        ``t``, the camera's timeline), then to the pool and the relay. A frame that is not
        ``live`` waits for room at the pool; a clip's frame carries ``clip`` and its index in it."""
        boxes = self.detector.boxes_of_frame(sf.frame)  # every frame decoded, on a small grey copy
        self.out.say_motion(self.gate.update(boxes, t, ts_ns, seq))
        take = self.sampler.take(t if sample_t is None else sample_t)
        if take and not self.gate.wanted(t):
            take = False
            self.out.counters.add("skipped", "no_motion")
        publish_enc = self.publish_enc if self.publish_enc is not None and self.subscribed() else None
        if not take and publish_enc is None:
            return  # skipped before colour conversion: the cheapest a skip can be
        image = sf.frame.to_ndarray(format="bgr24")
        header = wire.FrameHeader(camera=self.spec.name, seq=seq, ts_ns=ts_ns, pts=sf.t, width=image.shape[1],
                                  height=image.shape[0], enc=self.spec.enc, live=live, key=sf.key, motion=boxes,
                                  prev=self.out.prev_sent if take else None, clip=clip,
                                  clip_index=None if clip is None else sf.index)
        if publish_enc is not None:
            self.out.publish(encode_frame(header.with_enc(publish_enc), image))
        if take:
            self.gate.sent(t)
            # a stream sends a live frame or drops it; a file not paced in real time, or a clip's
            # sampled frames, all go to the pool
            self.out.send_frame(header, image, block=not live)
            self.out.prev_sent = seq

    def finish(self) -> None:
        """Motion on when the stream (or the feed) ends ends with it."""
        self.out.say_motion(self.gate.finish())
