"""One camera's thread: connect, decode, stamp, send; reconnect with backoff; report its status.

What it sends on its PUSH socket to the ventilator (see common.wire):
  - frames chosen by the sampling, as ``[header, pixels]``;
  - ``status`` maps (``state``: connecting | online | offline, with ``reason``) when the camera
    changes state, and again every STATUS_EVERY_S while it streams; each carries ``fps_in``
    (frames decoded a second), ``reconnects`` and ``last_error`` for the sink's status table;
  - one ``eos`` map when a file source has been read to its end (``sent``: frames it sent).
When ``--publish`` is on, the process's publish relay gets every decoded frame (LZ4 by default)
or, with ``passthrough``, every compressed packet of an H.264/HEVC source, undecoded; the status
and eos maps go there too, so a recorder knows when a camera ended.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import av
from av.bitstream import BitStreamFilterContext
import numpy as np
import structlog
import zmq

from common import wire
from common.counters import Counters
from common.lifecycle import StopFlag
from common.logs import redact_url
from common.sockets import make_socket
from extractor.sampling import Sampler, Sampling
from extractor.source import OPEN_TIMEOUT_S, READ_TIMEOUT_S, is_file, open_source, read_frames, to_seconds

PASSTHROUGH = "passthrough"

RELAY_HWM = 32  # frames or packets on their way to the PUB thread (inproc: references, not copies)
PUSH_HWM = 2  # frames queued towards the ventilator before we drop: latency stays bounded
BACKOFF_FIRST_S = 0.5
BACKOFF_CAP_S = 30.0
CONTROL_SEND_TIMEOUT_MS = 2000
STATUS_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """A camera as the extractor knows it: a name, its sources in order of preference, sampling."""

    name: str
    sources: tuple[str, ...]
    sampling: Sampling = field(default_factory=Sampling)
    realtime: bool = False
    enc: str = "raw"
    open_timeout: float = OPEN_TIMEOUT_S
    read_timeout: float = READ_TIMEOUT_S
    publish: bool = True  # to the recorder, when the process publishes at all


def backoff_delay(failures: int, first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_CAP_S) -> float:
    """Capped exponential backoff: 0.5, 1, 2, 4 ... 30 s after 1, 2, 3, 4 ... failed rounds."""
    return min(cap, first * 2 ** max(0, failures - 1))


class CameraLoop(threading.Thread):
    """Reads one camera until stopped (or, for a file, until its end), never exiting on failure."""

    def __init__(self, ctx: zmq.Context, spec: CameraSpec, push_addr: str, relay_addr: str | None,
                 publish_enc: str, stop: StopFlag, seq_start: int = 0) -> None:
        super().__init__(name=f"camera-{spec.name}", daemon=True)
        self.ctx, self.spec, self.push_addr, self.relay_addr = ctx, spec, push_addr, relay_addr
        self.publish_enc = publish_enc
        self.stop = stop
        self.counters = Counters()
        self.log = structlog.get_logger().bind(camera=spec.name)
        self._seq = seq_start
        self.fps_in = 0.0
        self._last_error: str | None = None
        self.stop_reason: str | None = None  # set before ``stop`` when the camera is taken away
        self._relay: zmq.Socket | None = None
        self._online = False
        self._offline_reported = False

    def run(self) -> None:
        push = make_socket(self.ctx, zmq.PUSH, connect=self.push_addr, sndhwm=PUSH_HWM, linger=5000)
        relay = make_socket(self.ctx, zmq.PUSH, connect=self.relay_addr, sndhwm=RELAY_HWM) if self.relay_addr else None
        self._relay = relay
        try:
            self._loop(push, relay)
            if self.stop_reason is not None:
                self.log.info("camera stopped", reason=self.stop_reason)
                self._send_status(push, "offline", reason=self.stop_reason)
        except Exception:
            self.log.exception("camera loop crashed")
            raise
        finally:
            push.close()
            if relay is not None:
                relay.close()

    @property
    def next_seq(self) -> int:
        """The seq the next frame gets (a restarted camera thread goes on from here)."""
        return self._seq

    # -- connection management ---------------------------------------------------------------

    def _loop(self, push: zmq.Socket, relay: zmq.Socket | None) -> None:
        failures = 0  # failed rounds over all sources since the last frame
        index = 0
        self._send_status(push, "connecting")
        while not self.stop.is_set():
            url = self.spec.sources[index]
            self.log.info("connecting", source=redact_url(url), attempt=failures + 1)
            try:
                with open_source(url, self.spec.open_timeout, self.spec.read_timeout) as container:
                    got_frames = self._stream(container, url, push, relay)
                if is_file(url) and not self.stop.is_set():
                    self._send_control(push, "eos", {"camera": self.spec.name,
                                                     "sent": self.counters.get("sent"),
                                                     "last_seq": self._seq - 1, "fps_in": round(self.fps_in, 2)})
                    self.log.info("end of file", frames=self._seq)
                    return
                reason = "stream ended"
            except (av.error.FFmpegError, OSError, ValueError, IndexError) as exc:
                # IndexError: a source with no video stream
                got_frames = False
                reason = f"{type(exc).__name__}: {exc}"
            if self.stop.is_set():
                return
            self._report_offline(push, reason, url)
            if got_frames:
                failures, index = 0, 0
            index = (index + 1) % len(self.spec.sources)
            if index == 0:  # every source tried once: wait before the next round
                failures += 1
                self.counters.add("reconnects")
                self.stop.wait(backoff_delay(failures))
            else:
                self.log.warning("trying fallback source", source=redact_url(self.spec.sources[index]))

    def _report_offline(self, push: zmq.Socket, reason: str, url: str) -> None:
        self.counters.add("errors", reason.split(":")[0])
        self._last_error = redact_url(reason)
        self.fps_in = 0.0
        if self._online or not self._offline_reported:
            self.log.warning("camera offline", reason=self._last_error, source=redact_url(url))
            self._send_status(push, "offline", reason=self._last_error)
            self._offline_reported = True
        self._online = False

    def _send_status(self, push: zmq.Socket, state: str, heartbeat: bool = False, **extra) -> None:
        body = {"camera": self.spec.name, "state": state, "ts_ns": time.time_ns(), "fps_in": round(self.fps_in, 2),
                "reconnects": self.counters.get("reconnects"), "last_error": self._last_error, **extra}
        if not heartbeat:
            self._send_control(push, "status", body)
            return
        try:  # a heartbeat never waits: the next one is only seconds away
            push.send(wire.pack("status", body), flags=zmq.NOBLOCK)
        except zmq.Again:
            self.counters.add("dropped", "status")

    def _send_control(self, push: zmq.Socket, kind: str, body: dict) -> None:
        """Status and end-of-stream are small and rare: wait a little for room rather than drop."""
        message = wire.pack(kind, body)
        if push.poll(CONTROL_SEND_TIMEOUT_MS, zmq.POLLOUT):
            push.send(message)
        else:
            self.counters.add("dropped", "control")
            self.log.warning("could not send control message", kind=kind)
        if self._relay is not None and self._relay.poll(CONTROL_SEND_TIMEOUT_MS, zmq.POLLOUT):
            self._relay.send(message)

    # -- frames ------------------------------------------------------------------------------

    def _stream(self, container, url: str, push: zmq.Socket, relay: zmq.Socket | None) -> bool:
        """Decode until the source ends; returns whether any frame came."""
        file = is_file(url)
        live = not file or self.spec.realtime
        sampler = Sampler(self.spec.sampling)
        opened_ns, opened_mono = time.time_ns(), time.monotonic()
        seq_base, got = self._seq, False
        beat_mono, beat_count = opened_mono, 0
        pace = self._pacer(opened_mono) if file and self.spec.realtime else None
        on_packet = None
        if relay is not None and self.publish_enc == PASSTHROUGH:
            on_packet = self._packet_publisher(container, relay, seq_base, opened_ns if file else None, live, pace)
        publish_frames = relay is not None and on_packet is None
        for sf in read_frames(container, self.spec.sampling.keyframes, on_packet):
            if self.stop.is_set():
                break
            if not got:
                got = True
                self._online = True
                self._offline_reported = False
                self.log.info("camera online", source=redact_url(url))
                self._send_status(push, "online")
                beat_mono, beat_count = time.monotonic(), 0  # fps_in is measured from the first frame
            self._seq = max(self._seq, seq_base + sf.index + 1)
            self.counters.add("decoded")
            beat_count += 1
            if (elapsed := time.monotonic() - beat_mono) >= STATUS_EVERY_S:
                self.fps_in = beat_count / elapsed
                self._send_status(push, "online", heartbeat=True)
                beat_mono, beat_count = time.monotonic(), 0
            t = sf.t if sf.t is not None else time.monotonic() - opened_mono
            if file:
                if pace is not None:
                    pace(t)
                ts_ns = opened_ns + int(t * 1e9)
            else:
                ts_ns = time.time_ns()
            take = sampler.take(t)
            if not take and not publish_frames:
                continue  # skipped before colour conversion: the cheapest a skip can be
            image = sf.frame.to_ndarray(format="bgr24")
            header = wire.FrameHeader(camera=self.spec.name, seq=seq_base + sf.index, ts_ns=ts_ns, pts=sf.t,
                                      width=image.shape[1], height=image.shape[0], enc=self.spec.enc,
                                      live=live, key=sf.key)
            if publish_frames:
                self._publish(relay, wire.encode_frame(header.with_enc(self.publish_enc), image))
            if take:
                self._send_frame(push, header, image, block=not live)
        if beat_count and (elapsed := time.monotonic() - beat_mono) >= 0.5 and not self.fps_in:
            self.fps_in = beat_count / elapsed  # a short stream's rate, measured over all of it
        return got

    def _pacer(self, opened_mono: float) -> Callable[[float], None]:
        """For a file read in real time: wait until ``t`` seconds of its timeline have passed."""
        def pace(t: float) -> None:
            self.stop.wait(max(0.0, opened_mono + t - time.monotonic()))
        return pace

    def _packet_publisher(self, container, relay: zmq.Socket, seq_base: int, file_start_ns: int | None,
                          live: bool, pace: Callable[[float], None] | None):
        """A callback that publishes each compressed packet as it is, or None (and a warning)
        when the source's codec cannot be passed through, in which case frames go out as LZ4."""
        stream = container.streams.video[0]
        ctx = stream.codec_context
        codec = ctx.name
        if codec not in wire.PACKET_ENCODINGS:
            self.log.warning("passthrough needs H.264 or HEVC; publishing LZ4 frames", codec=codec)
            self.publish_enc = "lz4"
            return None
        # MP4 and MKV sources hold length-prefixed NAL units: the filter makes them Annex B and
        # repeats the parameter sets before every key frame, so each key packet stands alone.
        # Sources already in Annex B (RTSP, MPEG-TS) go through it unchanged.
        bsf = BitStreamFilterContext(f"{codec}_mp4toannexb", in_stream=stream)
        extradata = ctx.extradata
        base, tb = stream.start_time or 0, stream.time_base
        index = seq_base

        def publish(packet: av.Packet) -> None:
            nonlocal index
            for out in bsf.filter(packet):
                pts = to_seconds(out.pts, base, tb)
                dts = to_seconds(out.dts, base, tb)
                if pace is not None and dts is not None:
                    pace(dts)  # packets too go out at the camera's pace, not in bursts between key frames
                if file_start_ns is not None and pts is not None:
                    ts_ns = file_start_ns + int(pts * 1e9)
                else:
                    ts_ns = time.time_ns()
                header = wire.FrameHeader(camera=self.spec.name, seq=index, ts_ns=ts_ns, pts=pts, dts=dts,
                                          width=ctx.width, height=ctx.height, enc=codec, live=live,
                                          key=out.is_keyframe, extradata=extradata if out.is_keyframe else None)
                index += 1
                self._seq = max(self._seq, index)
                self._publish(relay, wire.encode_packet(header, bytes(out)))

        return publish

    def _send_frame(self, push: zmq.Socket, header: wire.FrameHeader, image: np.ndarray, block: bool) -> None:
        parts = wire.encode_frame(header, image)
        if block:
            # a file not paced in real time: waiting is what "as fast as the pipeline takes it" means
            while not push.poll(200, zmq.POLLOUT):
                if self.stop.is_set():
                    return
        try:
            push.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.counters.add("sent")
        except zmq.Again:
            self.counters.add("dropped", "hwm")

    def _publish(self, relay: zmq.Socket, parts: list) -> None:
        try:
            relay.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.counters.add("published")
        except zmq.Again:
            self.counters.add("dropped", "publish")

