"""One camera's thread: connect, decode, stamp, send; reconnect with backoff; report its status.

What it sends on its PUSH socket to the ventilator (common.wire):
  - frames chosen by the sampling, as ``[FrameHeader, pixels]`` (common.pixels);
  - ``Status`` when the camera changes state (connecting | online | offline | failed, with a
    readable ``reason``), after every failed round (``attempts``: failed rounds since the last
    frame) and again every STATUS_EVERY_S while it streams or waits to retry; each carries
    ``fps_in``, ``reconnects`` and ``last_error`` for the sink's status table;
  - ``Motion`` when motion starts or ends (extractor.motion: found in every decoded frame, on a
    small grey copy), repeated with every status heartbeat; with ``detect = "motion"`` a sampled
    frame is sent only while there is motion, or as a heartbeat every ``--motion-heartbeat``
    (the rest counted as ``skipped/no_motion``); every frame header carries its motion boxes;
  - one ``Eos`` when a file camera is done: read to its end, ended early by a corrupt stretch
    (counted under ``ended_early``), or, in a process without ``--config``, failed for good
    (after its ``Status(failed)``), so the sink and the recorder drain it either way. A file
    camera with ``loop`` is never done, and sends none.
When ``--publish`` is on, the process's publish relay gets every decoded frame (LZ4 by default)
or, with ``passthrough``, every compressed packet of an H.264/HEVC source, undecoded; Status and
Eos go there too, so a recorder knows when a camera ended (Motion does not: it is the sink's).
The sockets and the per-frame step (motion, sampling, gate, encode, send, publish, count) are
extractor.emitter's, shared with a polled feed (extractor.feed), which drives this thread's status.

Failures (extractor.source.classify): a transient one (timeout, refused, stream ended, or a
stall: a live stream with no video for ``stall`` seconds) leaves the camera ``offline`` and
retried (the retry policy below). A permanent one (no such file, unknown protocol, HTTP
401/403/404, not a video) in every source makes it ``failed``, retried on the long ``failed_retry``. A file loops back to its start
only with ``loop`` (a test camera): at its end, or at a stretch it cannot read past, it is opened
again (counted under ``loops``), its seq running on and its capture times going on from where
the pass before ended (its length, as the container says). Anything else raised is a bug: the thread dies, and the daemon skeleton starts a new one whose seq runs on (``seq_start``).

The retry policy (:func:`retry_delay`), after every failed round of a live camera:
  - ``fast``: a camera whose last frame came less than RECENT_ONLINE_S (5 min) ago is probed
    every FAST_PROBE_S (1 s; 0.5 s after its first failure), so a server that stopped, restarted
    or froze is found again within a second or two of its answering. The probe is cheap: a
    refused connection costs nothing, and an RTSP source being retried (either policy) is first
    knocked at with a bare TCP connect bounded by KNOCK_TIMEOUT_S (:func:`knock`), so a round
    against a host that does not answer (a camera rebooting) takes two seconds, not FFmpeg's
    ``open_timeout``;
  - ``backoff``: a camera never online in this thread, or down for longer than RECENT_ONLINE_S,
    waits common.lifecycle.backoff_delay: 0.5, 1, 2, 4 ... capped at 30 s.
Each attempt's log record (``connecting``) says the wait before it (``waited_s``) and the policy
that chose it (``retry``); ``attempts`` counts the failed rounds since the last frame. A camera
back online sends no ``last_error`` (what failed before is the sink's to keep as past).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable, Literal
from urllib.parse import urlsplit

import av
from av.bitstream import BitStreamFilterContext
import structlog
import zmq

from camwire.common.settings.extractor import FAILED_RETRY_S, PASSTHROUGH
from camwire.common import wire
from camwire.common.camera_state import SEVERITY, Reported
from camwire.common.lifecycle import StopFlag, backoff_delay
from camwire.common.logs import redact_url
from camwire.common.pixels import encode_packet
from camwire.common.sockets import PeerWatch, make_socket
from camwire.extractor.emitter import PEER_CHECK_S, CameraCounters, Emitter, FrameStep
from camwire.extractor.feed import FeedLoop
from camwire.extractor.source import (SOURCE_ERRORS, Failure, Stalled, classify, file_span, is_file, open_source,
                                      read_frames, to_seconds)
from camwire.extractor.spec import CameraSpec


RELAY_HWM = 32  # frames or packets on their way to the PUB thread (inproc: references, not copies)
PUSH_HWM = 2  # frames queued towards the ventilator before we drop: latency stays bounded
STATUS_EVERY_S = 5.0
RECENT_S = 60.0  # "invalid data" from a camera online this recently is a glitch, not a source that is no video
RECENT_ONLINE_S = 300.0  # a camera whose last frame came this recently is probed fast while it is down
FAST_PROBE_S = 1.0  # the wait between its rounds meanwhile (the retry policy: the module's docstring)
KNOCK_TIMEOUT_S = 2.0  # a knock at an RTSP server's port gives up after this long
RTSP_PORTS = {"rtsp": 554, "rtsps": 322}

Retry = Literal["fast", "backoff"]


def retry_delay(attempts: int, down_for: float | None) -> tuple[float, Retry]:
    """The wait before the next round after ``attempts`` failed rounds, and the policy that chose
    it (the module's docstring): ``fast`` while the camera's last frame came less than
    RECENT_ONLINE_S ago (``down_for``: the seconds since; None: never online in this thread),
    else ``backoff``."""
    if down_for is not None and down_for < RECENT_ONLINE_S:
        return min(FAST_PROBE_S, backoff_delay(attempts)), "fast"
    return backoff_delay(attempts), "backoff"


def knock(url: str, timeout: float = KNOCK_TIMEOUT_S) -> None:
    """A bare TCP connect to an RTSP source's host and port, closed at once; raises OSError
    (refused, unreachable, or TimeoutError "no answer within ...") when nothing answers there.
    Other schemes are not knocked at (HTTP may go through a proxy that FFmpeg alone knows of)."""
    parts = urlsplit(url)
    if parts.scheme not in RTSP_PORTS or not parts.hostname:
        return
    try:
        port = parts.port or RTSP_PORTS[parts.scheme]
    except ValueError:
        return  # a bad port: FFmpeg refuses it in its own words
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except TimeoutError:
        raise TimeoutError(f"no answer within {timeout:g}s") from None


class CameraLoop(threading.Thread):
    """Reads one camera until stopped, or (a file) until it is done; ``finished`` then tells the
    daemon skeleton not to start it again, and ``outcome`` says how it ended (ended | ended_early |
    failed).

    ``finish_failed``: a camera of files only whose every source failed for good sends
    ``Status(failed)`` and ``Eos`` and finishes (a process without ``--config``); otherwise it is
    retried every ``failed_retry`` seconds.

    Its public members (``state``, ``attempts``, ``last_error``, ``set_state``, ``send_status``,
    ``note_failure``, ``wait``, ``use_seq``, ``out``) are what a polled feed drives it by
    (extractor.feed.FeedCamera)."""

    out: Emitter  # the thread's sockets, made in ``run`` and closed there

    def __init__(self, ctx: zmq.Context, spec: CameraSpec, push_addr: str, relay_addr: str | None,
                 publish_enc: str, counters: CameraCounters, seq_start: int = 0,
                 failed_retry: float = FAILED_RETRY_S, finish_failed: bool = False, log: Any = None,
                 resume: tuple[str, int, int] | None = None,
                 peer_watch: Callable[[zmq.Socket, str], PeerWatch] | None = None,
                 subscribed: Callable[[], bool] | None = None, online_at: float | None = None) -> None:
        super().__init__(name=f"camera-{spec.name}", daemon=True)
        # whether anyone subscribes to this camera's published video now (the daemon's XPUB
        # says): frames no one would receive are not converted, compressed or relayed
        self.subscribed = subscribed or (lambda: True)
        # connects the PUSH socket to the ventilator (Daemon.peer_watch: secured with --curve-key)
        self.peer_watch = peer_watch or (lambda sock, addr: PeerWatch(sock, addr, self.log))
        self.ctx, self.spec, self.push_addr, self.relay_addr = ctx, spec, push_addr, relay_addr
        self.publish_enc = publish_enc
        self.failed_retry, self.finish_failed = failed_retry, finish_failed
        self.stop = StopFlag()
        self.counters = counters
        self.log = log if log is not None else structlog.get_logger().bind(camera=spec.name)
        self._seq = seq_start
        # a file being read: (url, seq of its first frame, capture time of its start). A thread
        # started after a crash mid-file takes it as ``resume`` and goes on after the last frame
        # sent, with the same seq and capture times, instead of reading the file again from its start
        self.file_progress: tuple[str, int, int] | None = None
        self._resume = resume
        self._replay_ns = 0  # a looping file's next pass is stamped from here on (its last pass's end)
        self.fps_in = 0.0
        self.finished = False  # read by common.daemon: a thread that ended on purpose is not restarted
        self.outcome: str | None = None
        self.stop_reason: str | None = None  # set before ``stop`` when the camera is taken away
        self.state: Reported = "connecting"  # what it reports in wire.Status (common.camera_state)
        self._reason, self.attempts = None, 0
        self.last_error: str | None = None
        self._streamed = False  # a frame came from the source now open
        # monotonic time of the last frame from any source; a thread taking over a camera (a crash,
        # a reload) starts from its predecessor's, so a camera online a moment ago is probed fast
        self._online_at: float | None = online_at
        # the seq last sent to the pool (FrameHeader.prev): -1 from a fresh start, unknown (None)
        # in a thread that took over a camera, whose previous frame another thread sent
        self._prev_start: int | None = -1 if seq_start == 0 and resume is None else None

    def run(self) -> None:
        push = make_socket(self.ctx, zmq.PUSH, sndhwm=PUSH_HWM, linger=5000)
        peer = self.peer_watch(push, self.push_addr)  # connects it, its monitor on first
        relay = make_socket(self.ctx, zmq.PUSH, connect=self.relay_addr, sndhwm=RELAY_HWM) if self.relay_addr else None
        self.out = Emitter(push, peer, relay, self.counters, self.log, self.stop, self._prev_start,
                           camera=self.spec.name, shm_slots=self.spec.shm_slots,
                           source_slots=self.spec.source_slots if self.spec.detect_size else 0)
        try:
            self._loop()
            if self.stop_reason is not None:
                self.log.info("camera stopped", reason=self.stop_reason)
                self.set_state("offline", self.stop_reason, fresh=True)
        finally:  # anything raised is a bug: the skeleton logs it and starts a new thread
            self.out.close()

    @property
    def next_seq(self) -> int:
        """The seq the next frame gets (a restarted camera thread goes on from here)."""
        return self._seq

    # -- connection management ---------------------------------------------------------------

    def use_seq(self, seq: int) -> None:
        """A frame took ``seq``: the next frame gets a later one."""
        self._seq = max(self._seq, seq + 1)

    def _loop(self) -> None:
        if self.spec.poll is not None:  # a polled clip feed, not a stream
            FeedLoop(self).run()
            return
        index = 0
        round_permanent = True  # every source tried in this round failed for good
        failure: Failure | None = None
        waited: tuple[float, str] | None = None  # the wait before this round and what chose it
        self.set_state("connecting")
        while not self.stop.is_set():
            url = self.spec.sources[index]
            file = is_file(url)
            self.log.info("connecting", source=redact_url(url), attempt=self.attempts + 1,
                          **({"waited_s": round(waited[0], 3), "retry": waited[1]} if waited else {}))
            waited = None
            self._streamed, opened = False, False
            started = time.monotonic()
            try:
                if self.attempts and not file:
                    knock(url)  # a retry: a host that does not answer costs KNOCK_TIMEOUT_S, not open_timeout
                with open_source(url, self.spec.open_timeout, self.spec.read_timeout,
                                 None if file else self.spec.stall) as container:
                    opened = True
                    self._stream(container, url)
                failure = None if file else Failure(permanent=False, reason="stream ended", kind="ended")
            except SOURCE_ERRORS as exc:
                failure = self._classify(exc, opened, file, time.monotonic() - started)
            if self.stop.is_set():
                return
            if file and self.spec.loop and self._streamed:
                self._replay(failure)  # from its start again: a looping file never ends
                continue
            if file and (failure is None or self._streamed):
                self._end_file(failure)
                return
            assert failure is not None
            self.note_failure(failure, url, fallback_next=index + 1 < len(self.spec.sources))
            if self._streamed:  # it worked until now: a fresh round, from the first source
                self.attempts, index, round_permanent = 0, 0, True
            round_permanent = round_permanent and failure.permanent
            index = (index + 1) % len(self.spec.sources)
            if index != 0:
                self.log.warning("trying fallback source", source=redact_url(self.spec.sources[index]))
                continue
            # every source tried once: report the round, then wait before the next
            self.attempts += 1
            self.counters.add("reconnects")
            if round_permanent:
                self.set_state("failed", failure.reason, level="error")
                if self.finish_failed and self.spec.files_only:
                    self._finish("failed")
                    return
                waited = (self.failed_retry, "failed")
            else:
                self.set_state("offline", failure.reason)
                waited = retry_delay(self.attempts, self._down_for())
            self.wait(waited[0])
            round_permanent = True

    @property
    def online_at(self) -> float | None:
        """Monotonic time of the camera's last frame (in this thread or the one it took over from)."""
        return self._online_at

    def _down_for(self) -> float | None:
        """Seconds since the last frame from any source; None: none came in this thread or its predecessors."""
        return None if self._online_at is None else time.monotonic() - self._online_at

    def _recently_online(self) -> bool:
        down_for = self._down_for()
        return down_for is not None and down_for < RECENT_S

    def _classify(self, exc: BaseException, opened: bool, file: bool, took: float) -> Failure:
        """extractor.source.classify, told whether the attempt ran into its deadline; a live
        stream that went quiet while streaming is "stalled", whichever deadline noticed it."""
        if self._streamed and not file and isinstance(exc, (Stalled, av.error.ExitError)):
            return Failure(permanent=False, reason=f"stalled: no video for {self.spec.stall:g}s", kind="Stalled")
        timed_out = self.spec.open_timeout if not opened and took >= self.spec.open_timeout else None
        return classify(exc, opened=opened, file=file, timed_out=None if file else timed_out,
                        recently_online=self._recently_online())

    def note_failure(self, failure: Failure, url: str, fallback_next: bool) -> None:
        self.counters.add("source_errors", failure.kind)
        self.last_error = f"{failure.reason} ({redact_url(url)})"
        self.fps_in = 0.0
        self.log.warning("source failed", reason=failure.reason, permanent=failure.permanent, source=redact_url(url),
                         error=failure.kind)
        if fallback_next and self.state in ("connecting", "online"):
            self.set_state("offline", failure.reason)  # said at once, before the fallbacks are tried

    def _end_file(self, failure: Failure | None) -> None:
        if failure is not None:  # a corrupt stretch: the rest of the file is not read, nor the start again
            self.counters.add("ended_early", failure.kind)
            self.last_error = failure.reason
            self.log.warning("file ends early: it cannot be read past here", reason=failure.reason, frames=self._seq)
            self._finish("ended_early", f"ended early: {failure.reason}"[:4096])  # wire.Text's bound
            return
        self.log.info("end of file", frames=self._seq)
        self._finish("ended")

    def _replay(self, failure: Failure | None) -> None:
        """A looping file read to its end (or to a stretch it cannot read past): counted, and
        opened again by the caller, with no Eos."""
        if failure is not None:
            self.counters.add("ended_early", failure.kind)
            self.last_error = failure.reason
        if not self.counters.get("loops"):
            self.log.info("end of file; playing it again from its start, each time it ends", frames=self._seq,
                          reason=failure.reason if failure is not None else None)
        self.counters.add("loops")

    def _finish(self, outcome: str, reason: str | None = None) -> None:
        """End of stream; ``reason`` (a file that ended early) shows in the camera's status."""
        self.out.send_control(wire.Eos(camera=self.spec.name, sent=self.counters.get("sent"),
                                       last_seq=self._seq - 1, fps_in=round(self.fps_in, 2), reason=reason))
        self.outcome = outcome
        self.finished = True

    def wait(self, seconds: float) -> None:
        """Sleep before the next round, still heartbeating and watching the PUSH socket's peer."""
        deadline = time.monotonic() + seconds
        beat = time.monotonic()
        while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self.stop.wait(min(left, PEER_CHECK_S))
            self.out.check_peer()
            if time.monotonic() - beat >= STATUS_EVERY_S:
                self.send_status(heartbeat=True)
                beat = time.monotonic()

    # -- status --------------------------------------------------------------------------------

    def set_state(self, state: Reported, reason: str | None = None, level: str = "warning", fresh: bool = False) -> None:
        """Change state and say so; ``reason`` stays the one the state began with (why the camera
        went offline), while ``last_error`` follows every failed attempt, and is cleared when the
        camera is online again (the error is past: the sink keeps it as such). ``fresh``: a new
        reason even in the same state (a camera taken away while offline)."""
        if state != self.state or fresh:
            if SEVERITY[state] == "down":  # offline, failed
                getattr(self.log, level)(f"camera {state}", reason=reason, attempts=self.attempts)
            if state == "online":
                self.last_error = None
            self.state, self._reason = state, reason
        self.send_status()

    def _drops(self) -> dict[str, int]:
        """This camera's dropped and skipped frames by reason (``dropped/hwm``), for its status."""
        tree = self.counters.counters
        return {f"{key}/{why}"[:128]: n for key in ("dropped", "skipped")
                for why, n in sorted(tree.get_tree(key).get(self.spec.name, {}).items()) if isinstance(n, int)}

    def send_status(self, heartbeat: bool = False) -> None:
        status = wire.Status(camera=self.spec.name, state=self.state, ts_ns=time.time_ns(), reason=self._reason,
                             fps_in=round(self.fps_in, 2), reconnects=self.counters.get("reconnects"),
                             attempts=self.attempts, last_error=self.last_error,
                             refused=wire.refusals(self.counters.counters.get_tree("handshakes_failed"),
                                                   self.counters.counters.get_tree("refused_peers")),
                             drops=self._drops(), decoded=self.counters.get("decoded"),
                             sent=self.counters.get("sent"))  # its side of the frames' account (common.frame_account)
        if heartbeat:
            self.out.send_heartbeat(status)
        else:
            self.out.send_control(status)

    # -- frames ------------------------------------------------------------------------------

    def _stream(self, container: av.container.InputContainer, url: str) -> None:
        """Decode until the source ends (``_streamed`` says whether any frame came)."""
        file = is_file(url)
        live = not file or self.spec.realtime
        opened_ns, opened_mono = max(time.time_ns(), self._replay_ns), time.monotonic()
        seq_base, skip_below = self._seq, 0
        if file and self._resume is not None and self._resume[0] == url:
            _, seq_base, opened_ns = self._resume  # frames below self._seq were sent by the thread before
            skip_below = self._seq
            self.log.info("resuming the file after the last frame sent", seq=skip_below)
        self._resume = None
        self.file_progress = (url, seq_base, opened_ns) if file else None
        beat_mono, beat_count = opened_mono, 0
        origin = [opened_mono]  # where the file's timeline starts in monotonic time (moved on a resume)
        pace = self._pacer(origin) if file and self.spec.realtime else None
        on_packet = None
        if self.out.relay is not None and self.publish_enc == PASSTHROUGH:
            on_packet = self._packet_publisher(container, seq_base, opened_ns if file else None, live, pace,
                                               skip_below)
        publish_frames = self.out.relay is not None and on_packet is None
        # a new motion background per connection
        step = FrameStep(self.spec, self.out, self.publish_enc if publish_frames else None, self.subscribed)
        stall = None if file else self.spec.stall  # a file has no stalls: it ends
        for sf in read_frames(container, self.spec.sampling.keyframes, on_packet, stall=stall):
            if self.stop.is_set():
                break
            if seq_base + sf.index < skip_below:
                self.counters.add("skipped", "resumed")
                continue
            if skip_below and sf.t is not None:
                origin[0], skip_below = time.monotonic() - sf.t, 0  # paced from here on, not from the start
            if not self._streamed:
                self._streamed, self.attempts = True, 0
                self.log.info("camera online", source=redact_url(url))
                self.set_state("online")
                beat_mono, beat_count = time.monotonic(), 0  # fps_in is measured from the first frame
            self.use_seq(seq_base + sf.index)
            self._online_at = time.monotonic()
            self.counters.add("decoded")
            beat_count += 1
            if (elapsed := time.monotonic() - beat_mono) >= STATUS_EVERY_S:
                self.fps_in = beat_count / elapsed
                self.send_status(heartbeat=True)
                beat_mono, beat_count = time.monotonic(), 0
            self.out.check_peer()
            t = sf.t if sf.t is not None else time.monotonic() - opened_mono
            if file:
                if pace is not None:
                    pace(t)
                ts_ns = opened_ns + int(t * 1e9)
            else:
                ts_ns = time.time_ns()
            step(sf, seq_base + sf.index, t, ts_ns, live=live)
        step.finish()  # motion on when the stream ends ends with it
        if beat_count and (elapsed := time.monotonic() - beat_mono) >= 0.5 and not self.fps_in:
            self.fps_in = beat_count / elapsed  # a short stream's rate, measured over all of it
        if not self.stop.is_set():
            self.file_progress = None  # read to its end (or its corrupt stretch): nothing to resume
        if file and self.spec.loop:  # its next pass goes on from the end of this one
            self._replay_ns = opened_ns + int(file_span(container) * 1e9)

    def _pacer(self, origin: list[float]) -> Callable[[float], None]:
        """For a file read in real time: wait until ``t`` seconds of its timeline have passed
        since ``origin[0]`` (monotonic)."""
        def pace(t: float) -> None:
            self.stop.wait(max(0.0, origin[0] + t - time.monotonic()))
        return pace

    def _packet_publisher(self, container: av.container.InputContainer, seq_base: int, file_start_ns: int | None,
                          live: bool, pace: Callable[[float], None] | None,
                          skip_below: int = 0) -> Callable[[av.Packet], None] | None:
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
                if index < skip_below:  # published by the thread before this one
                    index += 1
                    continue
                pts = to_seconds(out.pts, base, tb)
                dts = to_seconds(out.dts, base, tb)
                if pace is not None and dts is not None:
                    pace(dts)  # packets too go out at the camera's pace, not in bursts between key frames
                if not self.subscribed():
                    index += 1
                    self._seq = max(self._seq, index)
                    continue
                if file_start_ns is not None and pts is not None:
                    ts_ns = file_start_ns + int(pts * 1e9)
                else:
                    ts_ns = time.time_ns()
                header = wire.FrameHeader(camera=self.spec.name, seq=index, ts_ns=ts_ns, pts=pts, dts=dts,
                                          width=ctx.width, height=ctx.height, enc=codec, live=live,
                                          key=out.is_keyframe, extradata=extradata if out.is_keyframe else None)
                index += 1
                self._seq = max(self._seq, index)
                self.out.publish(encode_packet(header, bytes(out)))

        return publish
