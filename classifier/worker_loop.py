"""A ``camwire classifier`` worker's state and the handlers, timers and hooks common.daemon runs
for it (:class:`Worker`, wired up by classifier.worker's main): its sockets, frames and control
messages from its ventilators (one link each, classifier.links), results from the detection
thread (classifier.detection) on to the camera's sink (classifier.sinks), batching, credits and
done frames back to the ventilator that sent each frame, heartbeats, the detection thread's care
(its frames answered with an error if it dies, the worker out until it is back), and leaving,
served on the skeleton's loop like the rest.

With several ventilators each link has its own credit window, heartbeats, ``reset`` and
``leaving``; the detection thread takes their frames first come. A ventilator that goes away
costs only its own link: its credits are never used, the frames it sent are still detected (their
results reach the sink, their done is lost with it), and the others' frames flow on."""

from __future__ import annotations

import os
import queue
import time
from typing import Any

import msgspec
import zmq

from camwire.classifier.detection import Batch, Detection, result_parts
from camwire.classifier.detector_name import served_name
from camwire.classifier.detectors import Detector
from camwire.classifier.links import HEARTBEAT_S, Link
from camwire.classifier.sinks import Sinks
from camwire.common import shm, wire
from camwire.common.config import Config
from camwire.common.daemon import Daemon
from camwire.common.settings import ClassifierSettings
from camwire.common.sockets import PeerWatch

LEAVE_TIMEOUT_S = 4.0  # longest a stopping worker spends finishing frames it already took
BYE_WAIT_S = 1.0
FRAME_TIME_ALPHA = 0.2  # how fast the per-frame detection time follows a change

Key = tuple[str, int]


def window_for(batch: int, rtt_s: float | None, frame_s: float | None, max_window: int) -> int:
    """The frames a worker asks the ventilator for at once: a batch, the next frame (at hand when
    the last is done: no idle gap per frame, which on a loaded host is where a pool lost a fifth
    of its work), and what it finishes during one round trip at the pace it works (so a frame
    asked for arrives before it is needed), bounded by ``max_window``. A live camera's frame waits at
    most one detection at the worker; the ventilator still keeps only the newest of the rest.
    Before a frame's time is known: the batch alone."""
    if rtt_s is None or not frame_s:
        return max(1, batch)
    in_flight = int(rtt_s / frame_s + 0.9)  # frames it finishes during one round trip, rounded up
    return max(1, min(batch + 1 + in_flight, max(batch, max_window)))


class Worker:
    """A classifier worker's state: its sockets (a link with a DEALER to each ventilator, a PUSH to
    each sink, the detection thread's inproc PULL), what it holds and which ventilator sent it, and
    the detection thread; its methods are the links' and the pipe's handlers, the timers
    (heartbeat, batching, the thread's care), the reload hook and its leaving."""

    def __init__(self, daemon: Daemon, args: ClassifierSettings, detector: Detector, name: str) -> None:
        self.daemon, self.detector, self.name = daemon, detector, name
        self.batch, self.batch_wait_s, self.max_frame_bytes = args.batch, args.batch_wait, args.max_frame_bytes
        self.max_window = args.max_window
        self.serves = served_name(args.serves or args.detector)  # the detector name it serves, said in every ready
        self.log, self.counters = daemon.log, daemon.counters
        self.pipe_addr = f"inproc://results-{os.getpid()}"
        self.pipe = daemon.socket(zmq.PULL, bind=self.pipe_addr, linger=0)
        self.links = [Link(daemon, addr, name) for addr in dict.fromkeys(args.connect or [])]
        self.sinks = Sinks(daemon, args.sink or [], self.counters)
        # a result's pixels (for the snapshots the sink keeps): raw to sinks on this host, where a
        # copy costs less than any codec; LZ4 across a network
        # (classifier.detection.result_parts; a frame that came in shared memory: its slot named)
        self.pixel_enc = "raw" if self.sinks.local() else "lz4"
        self.batches: queue.Queue[Batch | None] = queue.Queue()
        self.detection: Detection | None = None
        self.pending: Batch = []  # taken, waiting to be handed to the detection thread
        self.first_pending_at = 0.0
        self.in_detection: dict[Key, wire.FrameHeader] = {}  # handed over, result not yet back
        self.origin: dict[Key, Link] = {}  # every frame held (pending or in detection) -> the link it came by
        self.down = False  # the detection thread died; we are out until it is started again
        self.leaving = False
        self._left_at = 0.0  # when it told the ventilators it is leaving
        self.busy_s = 0.0  # of detection threads that have died
        self.frame_s: float | None = None  # the detection time per frame (from results), for the windows
        # the extractors' shared-memory rings this worker maps (common.shm): a frame whose pixels
        # wait in one is detected in place and its slot given back when its result is out (or
        # handed on to the sink with the result, which names it: on_pipe)
        self.host = shm.host_id()
        self.readers = shm.Readers()

    def held(self) -> int:
        return len(self.pending) + len(self.in_detection)

    def held_from(self, link: Link) -> int:
        return sum(1 for origin in self.origin.values() if origin is link)

    # -- the detection thread --------------------------------------------------------------------

    def new_detection(self) -> Detection:
        """The watcher's factory: at start, and again after the thread died."""
        if self.detection is not None:
            self.check_detection()  # its frames are answered before a new thread starts
            self.busy_s += self.detection.busy_s
        self.detection = Detection(self.daemon.ctx, self.detector, self.pipe_addr, self.name, self.batches,
                                   self.counters, self.max_frame_bytes, self.log, still_valid=self.still_valid,
                                   pixel_enc=self.pixel_enc)
        if self.down:
            self.down = False
            self.log.info("detection thread back; asking for work again")
            for link in self.links:
                link.bye = False  # the bye our "leaving" brought is not the last one
                self._top_up(link, [])
        return self.detection

    def check_detection(self) -> None:
        """A dead detection thread's frames get results with an error; then we are out (no heartbeat,
        no credits) until the watcher starts a new one."""
        thread = self.detection
        if self.down or thread is None or thread.is_alive() or thread.finished or not thread.ident:
            return
        self.down = True
        self.daemon.drain(self.pipe)  # results it made before dying are real ones
        while True:
            try:
                if self.batches.get_nowait() is None:
                    self.batches.put(None)  # a stop asked for meanwhile stays asked for
                    break
            except queue.Empty:
                break
        lost = list(self.in_detection.values()) + [h for h, _ in self.pending]
        self.in_detection.clear()
        self.pending = []
        self.log.error("detection thread died; its frames get results with an error", frames=len(lost))
        self._fail(lost, "detection_died", "the detection thread died", refill=False)
        for link in self.links:
            self._send_ready(link, 0, [], leaving=True)  # no more work until the thread is back
            link.outstanding = 0  # a leaving worker's credits are dropped by the ventilator

    # -- input -----------------------------------------------------------------------------------

    def on_link(self, link: Link, parts: list[zmq.Frame]) -> None:
        """A frame, or a control message, from the ventilator at the end of ``link``."""
        if len(parts) == 2:
            self._frame(link, parts)
            return
        msg = wire.unpack(parts[0].buffer)
        wire.expect(msg, wire.Heartbeat, wire.Reset, wire.Bye, wire.Status, wire.Eos, wire.Motion, wire.Workers)
        if len(parts) != 1:
            raise wire.MalformedMessage("bad_part_count", f"{type(msg).__name__} in {len(parts)} parts")
        if isinstance(msg, wire.Workers):
            self.sinks.workers(msg, parts[0].bytes)
        elif isinstance(msg, (wire.Status, wire.Eos, wire.Motion)):
            self.sinks.send(msg.camera, [parts[0].bytes])
        elif isinstance(msg, wire.Heartbeat):
            if msg.echo is not None:  # our own heartbeat's time, sent straight back: one round trip
                link.rtts.append(max(0.0, (time.monotonic_ns() - msg.echo) / 1e9))
        elif isinstance(msg, wire.Reset):
            # this ventilator does not know us (it restarted): our credits again, once per beat
            # however many resets a backlog of heartbeats brings back
            now = time.monotonic()
            if not self.down and not self.leaving and now - link.last_reset >= HEARTBEAT_S:
                link.last_reset = now
                link.outstanding = 0  # those it had are gone with it
                self._top_up(link, [])
        elif isinstance(msg, wire.Bye):
            link.bye = True

    def _frame(self, link: Link, parts: list[zmq.Frame]) -> None:
        link.outstanding = max(0, link.outstanding - 1)
        try:
            header = wire.peek_frame([p.buffer for p in parts], self.max_frame_bytes)
        except wire.MalformedMessage as exc:
            self.daemon.malformed(exc)
            try:
                header = wire.unpack(parts[0].buffer)
            except wire.MalformedMessage:
                header = None
            if isinstance(header, wire.FrameHeader):  # answered, so the ventilator completes it
                self.origin[(header.camera, header.seq)] = link
                self._fail([header], f"malformed_{exc.reason}", f"malformed: {exc}")
            else:  # nothing names it: its credit back, the ventilator's deadline settles it
                self._top_up(link, [])
            return
        self.origin[(header.camera, header.seq)] = link
        if self.down:
            self._fail([header], "detection_down", "the detection thread is down", refill=False)
            return
        if header.shm is not None:
            try:  # the pixels in place: no copy; the header without its ref, so decoding takes the view
                view = self.readers.view(header.shm, header.raw_size)
            except shm.ShmError as exc:
                self.counters.add("shm", exc.reason)
                self._fail([header], f"shm_{exc.reason}", f"shared memory: {exc}")
                return
            parts = [zmq.Frame(wire.pack(msgspec.structs.replace(header, shm=None))), zmq.Frame(view, copy=False)]
        if not self.pending:
            self.first_pending_at = time.monotonic()
        self.pending.append((header, parts))
        self.start_batch()

    def on_pipe(self, parts: list[zmq.Frame]) -> None:
        """A result from the detection thread: to the camera's sink, and the frame done to the
        ventilator that sent it."""
        result = wire.unpack(parts[0].buffer)
        wire.expect(result, wire.Result)
        key = (result.camera, result.seq)
        header = self.in_detection.pop(key, None)
        if header is None:
            self.counters.add("late", "unknown_result")  # already answered with an error
            return
        self.counters.add("results")
        if result.error is None and result.infer_ms > 0:
            t = result.infer_ms / 1000
            self.frame_s = t if self.frame_s is None else self.frame_s + FRAME_TIME_ALPHA * (t - self.frame_s)
        # a result naming the frame's slot (image_shm) hands the slot on: the sink releases it once
        # it has copied the pixels (or the ring's lease frees it, should the sink never read them)
        if not self.sinks.send(result.camera, [p.bytes for p in parts]) or result.image_shm is None:
            self._give_back(header)
        link = self.origin.pop(key, None)
        if link is not None:
            self._top_up(link, [key])
        self.start_batch()

    # -- output ----------------------------------------------------------------------------------

    def start_batch(self) -> None:
        """Hand the next batch over when the thread is free and the batch full or waited long enough
        (leaving: at once, whatever it holds)."""
        if self.in_detection or not self.pending or self.down:
            return
        now = time.monotonic()
        if len(self.pending) >= self.batch or now >= self.first_pending_at + self.batch_wait_s or self.leaving:
            batch, self.pending = self.pending[: self.batch], self.pending[self.batch:]
            self.first_pending_at = now
            self.in_detection = {(h.camera, h.seq): h for h, _ in batch}
            self.batches.put(batch)

    def _fail(self, headers: list[wire.FrameHeader], reason: str, error: str, refill: bool = True) -> None:
        """Results with ``error`` for frames that will not be processed, and them done to the
        ventilators that sent them (with credits for more, unless ``refill`` is False: a worker that
        cannot work asks for none)."""
        done: dict[Link, list[Key]] = {}
        for header in headers:
            self.counters.add("failed", reason)
            self._give_back(header)
            self.sinks.send(header.camera, result_parts(header, self.name, self.detector.name, error=error))
            key = (header.camera, header.seq)
            if (link := self.origin.pop(key, None)) is not None:
                done.setdefault(link, []).append(key)
        for link, keys in done.items():
            if refill:
                self._top_up(link, keys)
            else:
                self._send_ready(link, 0, keys)

    def _give_back(self, header: wire.FrameHeader) -> None:
        """A frame done with: its shared-memory slot back to its ring's writer."""
        if header.shm is not None:
            self.readers.release(header.shm)

    def still_valid(self, header: wire.FrameHeader) -> bool:
        """(The detection thread's check after the detector ran) the frame's slot was not reused
        meanwhile: what the detector saw was this frame."""
        return header.shm is None or self.readers.valid(header.shm)

    def sweep_rings(self) -> None:
        """Unmap the rings of extractors gone or restarted under a new name."""
        self.readers.sweep()

    def window(self, link: Link) -> int:
        """``link``'s credit window: sized by its own round trip (a distant ventilator's is wider)."""
        return window_for(self.batch, link.rtt(), self.frame_s, self.max_window)

    def _top_up(self, link: Link, done: list[Key]) -> None:
        """Frames done, and credits enough that what the worker holds from ``link``'s ventilator and
        what is on its way from there fill that link's window."""
        credits = 0 if self.down or self.leaving else max(0, self.window(link) - self.held_from(link)
                                                           - link.outstanding)
        if credits or done:
            link.outstanding += credits
            self._send_ready(link, credits, done)

    def _send_ready(self, link: Link, credits: int, done: list[Key], leaving: bool = False) -> None:
        msg = wire.Ready(worker=self.name, credits=min(credits, 4096), done=done, leaving=leaving,
                         detector=self.serves, host=self.host)
        if not link.send(msg):
            self.counters.add("dropped", "ready_unsent")

    def ask_for_work(self) -> None:
        """The first ``ready`` on every link: a batch's worth of credits (each window grows once its
        round trips are measured)."""
        for link in self.links:
            self._top_up(link, [])

    def heartbeat(self) -> None:
        """Only while the detection thread is alive, and not once leaving: a worker that cannot
        work does not say it can."""
        thread = self.detection
        if self.down or self.leaving or thread is None or not thread.is_alive():
            return
        for link in self.links:
            beat = wire.Heartbeat(worker=self.name, sent=time.monotonic_ns())  # echoed: a round trip measured
            if not link.send(beat):
                self.counters.add("dropped", "heartbeat_unsent")
            self._top_up(link, [])  # a window grown since the last frame (a round trip measured) is filled now

    # -- stopping ----------------------------------------------------------------------------------

    def leave(self) -> None:
        """The daemon's cleanup: tell every ventilator we are leaving, finish what we hold on the
        skeleton's loop (bounded by LEAVE_TIMEOUT_S), then stop the detection thread."""
        try:
            self.leaving = True
            self._left_at = time.monotonic()
            for link in self.links:
                self._send_ready(link, 0, [], leaving=True)
            self.log.info("leaving: finishing the frames already taken", held=self.held())
            self.start_batch()
            self.daemon.serve_until(self.left, LEAVE_TIMEOUT_S)
            if self.held():
                self.log.warning("left with frames unfinished", frames=self.held())
            self.batches.put(None)
            if self.detection is not None:
                self.detection.stopping.set()
                self.detection.join(timeout=5.0)
        finally:
            for p in self.peers():
                p.close()
            self.readers.close()

    def left(self) -> bool:
        """Nothing held, and every ventilator's ``bye`` came (or did not within BYE_WAIT_S: one
        that is gone never says it)."""
        return self.held() == 0 and (all(link.bye for link in self.links)
                                     or time.monotonic() > self._left_at + BYE_WAIT_S)

    def peers(self) -> list[PeerWatch]:
        """Every address it connects to, watched: each ventilator's and each sink's."""
        return [link.peer for link in self.links] + self.sinks.peers

    def check_peers(self) -> None:
        for p in self.peers():
            p.check()

    def reload(self, _cfg: Config | None) -> None:
        """The detector is built once; a new one needs a restart."""
        self.log.info("reload: nothing to change", detector=self.detector.name, held=self.held())

    def rtt(self) -> float | None:
        """The longest of the links' round trips (None before any was measured)."""
        return max((r for link in self.links if (r := link.rtt()) is not None), default=None)

    def gauges(self) -> dict:
        return {"held": ("frames taken and not yet done", (), {(): self.held()}),
                "window": ("frames it asks for at once, every ventilator's window together: its batch and a round "
                           "trip's worth each", (), {(): sum(self.window(link) for link in self.links)}),
                "round_trip_seconds": ("to the ventilator and back (median of recent heartbeats; the longest of its "
                                       "ventilators')", (), {(): self.rtt() or 0.0})}

    def stats_extra(self) -> dict[str, Any]:
        """The worker's account beside its counters, and each ventilator's link apart."""
        busy = self.busy_s + (self.detection.busy_s if self.detection else 0.0)
        ventilators = {link.addr: {"window": self.window(link), "held": self.held_from(link),
                                   "outstanding": link.outstanding, "round_trip_ms": _ms(link.rtt())}
                       for link in self.links}
        return {"name": self.name, "busy_seconds": round(busy, 3),
                "window": sum(v["window"] for v in ventilators.values()), "round_trip_ms": _ms(self.rtt()),
                "frame_ms": _ms(self.frame_s), "ventilators": ventilators, "sinks": self.sinks.addrs}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)

