"""A ``camwire classifier`` worker's state and the handlers, timers and hooks common.daemon runs
for it (:class:`Worker`, wired up by classifier.worker's main): its sockets, frames and control
messages from the ventilator, results from the detection thread (classifier.detection) on to the
sink, batching, credits and done frames back to the ventilator, heartbeats, the detection
thread's care (its frames answered with an error if it dies, the worker out until it is back),
and leaving, served on the skeleton's loop like the rest."""

from __future__ import annotations

import os
import queue
import time
from typing import Any

import zmq

from camwire.classifier.detection import Batch, Detection, result_parts
from camwire.classifier.detectors import Detector
from camwire.common import wire
from camwire.common.config import Config
from camwire.common.curve import SERVER_OF
from camwire.common.daemon import Daemon
from camwire.common.settings import ClassifierSettings
from camwire.common.sockets import send_nowait

HEARTBEAT_S = 1.0
LEAVE_TIMEOUT_S = 4.0  # longest a stopping worker spends finishing frames it already took
BYE_WAIT_S = 1.0
SINK_HWM = 1000
DEALER_HWM = 100  # ready/heartbeat queued while the ventilator is away; past it they are dropped

Key = tuple[str, int]


class Worker:
    """A classifier worker's state: its sockets (DEALER to the ventilator, PUSH to the sink, the
    detection thread's inproc PULL), what it holds, and the detection thread; its methods are the
    dealer's and the pipe's handlers, the timers (heartbeat, batching, the thread's care), the
    reload hook and its leaving."""

    def __init__(self, daemon: Daemon, args: ClassifierSettings, detector: Detector, name: str) -> None:
        self.daemon, self.detector, self.name = daemon, detector, name
        self.batch, self.batch_wait_s, self.max_frame_bytes = args.batch, args.batch_wait, args.max_frame_bytes
        self.serves = args.serves or args.detector  # the detector name it serves, said in every ready
        self.log, self.counters = daemon.log, daemon.counters
        self.pipe_addr = f"inproc://results-{os.getpid()}"
        self.pipe = daemon.socket(zmq.PULL, bind=self.pipe_addr, linger=0)
        self.dealer = daemon.socket(zmq.DEALER, identity=name.encode(), sndhwm=DEALER_HWM)
        self.sink = daemon.socket(zmq.PUSH, sndhwm=SINK_HWM, linger=5000)
        self.peers = [daemon.peer_watch(self.dealer, args.connect, SERVER_OF["connect"]),  # they connect the sockets
                      daemon.peer_watch(self.sink, args.sink, SERVER_OF["sink"])]
        self.batches: queue.Queue[Batch | None] = queue.Queue()
        self.detection: Detection | None = None
        self.pending: Batch = []  # taken, waiting to be handed to the detection thread
        self.first_pending_at = 0.0
        self.in_detection: dict[Key, wire.FrameHeader] = {}  # handed over, result not yet back
        self.down = False  # the detection thread died; we are out until it is started again
        self.bye = False
        self.leaving = False
        self._left_at = 0.0  # when it told the ventilator it is leaving
        self._last_reset = -HEARTBEAT_S
        self.busy_s = 0.0  # of detection threads that have died

    def held(self) -> int:
        return len(self.pending) + len(self.in_detection)

    # -- the detection thread --------------------------------------------------------------------

    def new_detection(self) -> Detection:
        """The watcher's factory: at start, and again after the thread died."""
        if self.detection is not None:
            self.check_detection()  # its frames are answered before a new thread starts
            self.busy_s += self.detection.busy_s
        self.detection = Detection(self.daemon.ctx, self.detector, self.pipe_addr, self.name, self.batches,
                                   self.counters, self.max_frame_bytes, self.log)
        if self.down:
            self.down, self.bye = False, False  # the bye our "leaving" brought is not the last one
            self.log.info("detection thread back; asking for work again")
            self._send_ready(max(0, self.batch - self.held()), [])
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
        self._fail(lost, "detection_died", "the detection thread died", credits=0)
        self._send_ready(0, [], leaving=True)  # no more work until the thread is back

    # -- input -----------------------------------------------------------------------------------

    def on_dealer(self, parts: list[zmq.Frame]) -> None:
        """A frame, or a control message, from the ventilator."""
        if len(parts) == 2:
            self._frame(parts)
            return
        msg = wire.unpack(parts[0].buffer)
        wire.expect(msg, wire.Heartbeat, wire.Reset, wire.Bye, wire.Status, wire.Eos, wire.Motion, wire.Workers)
        if len(parts) != 1:
            raise wire.MalformedMessage("bad_part_count", f"{type(msg).__name__} in {len(parts)} parts")
        if isinstance(msg, (wire.Status, wire.Eos, wire.Motion, wire.Workers)):
            self._to_sink([parts[0].bytes])
        elif isinstance(msg, wire.Reset):
            # the ventilator does not know us (it restarted): our credits again, once per beat
            # however many resets a backlog of heartbeats brings back
            now = time.monotonic()
            if not self.down and not self.leaving and now - self._last_reset >= HEARTBEAT_S:
                self._last_reset = now
                self._send_ready(max(0, self.batch - self.held()), [])
        elif isinstance(msg, wire.Bye):
            self.bye = True

    def _frame(self, parts: list[zmq.Frame]) -> None:
        try:
            header = wire.peek_frame([p.buffer for p in parts], self.max_frame_bytes)
        except wire.MalformedMessage as exc:
            self.daemon.malformed(exc)
            try:
                header = wire.unpack(parts[0].buffer)
            except wire.MalformedMessage:
                header = None
            if isinstance(header, wire.FrameHeader):  # answered, so the ventilator completes it
                self._fail([header], f"malformed_{exc.reason}", f"malformed: {exc}", credits=1)
            else:  # nothing names it: its credit back, the ventilator's deadline settles it
                self._send_ready(1, [])
            return
        if self.down:
            self._fail([header], "detection_down", "the detection thread is down", credits=0)
            return
        if not self.pending:
            self.first_pending_at = time.monotonic()
        self.pending.append((header, parts))
        self.start_batch()

    def on_pipe(self, parts: list[zmq.Frame]) -> None:
        """A result from the detection thread: to the sink, and the frame done to the ventilator."""
        result = wire.unpack(parts[0].buffer)
        wire.expect(result, wire.Result)
        key = (result.camera, result.seq)
        if self.in_detection.pop(key, None) is None:
            self.counters.add("late", "unknown_result")  # already answered with an error
            return
        self.counters.add("results")
        self._to_sink([p.bytes for p in parts])
        self._send_ready(1, [key])
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

    def _fail(self, headers: list[wire.FrameHeader], reason: str, error: str, credits: int) -> None:
        """Results with ``error`` for frames that will not be processed, and them done."""
        if not headers:
            return
        for header in headers:
            self.counters.add("failed", reason)
            self._to_sink(result_parts(header, self.name, self.detector.name, error=error))
        self._send_ready(credits * len(headers), [(h.camera, h.seq) for h in headers])

    def _to_sink(self, parts: list[bytes]) -> None:
        if not send_nowait(self.sink, parts):
            self.counters.add("dropped", "sink_full")

    def _send_ready(self, credits: int, done: list[Key], leaving: bool = False) -> None:
        msg = wire.Ready(worker=self.name, credits=min(credits, 4096), done=done, leaving=leaving,
                         detector=self.serves)
        if not send_nowait(self.dealer, [wire.pack(msg)]):
            self.counters.add("dropped", "ready_unsent")

    def ask_for_work(self) -> None:
        """The first ``ready``: a batch's worth of credits."""
        self._send_ready(self.batch, [])

    def heartbeat(self) -> None:
        """Only while the detection thread is alive, and not once leaving: a worker that cannot
        work does not say it can."""
        thread = self.detection
        if not self.down and not self.leaving and thread is not None and thread.is_alive():
            if not send_nowait(self.dealer, [wire.pack(wire.Heartbeat(worker=self.name))]):
                self.counters.add("dropped", "heartbeat_unsent")

    # -- stopping ----------------------------------------------------------------------------------

    def leave(self) -> None:
        """The daemon's cleanup: tell the ventilator we are leaving, finish what we hold on the
        skeleton's loop (bounded by LEAVE_TIMEOUT_S), then stop the detection thread."""
        try:
            self.leaving = True
            self._left_at = time.monotonic()
            self._send_ready(0, [], leaving=True)
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
            for p in self.peers:
                p.close()

    def left(self) -> bool:
        """Nothing held, and the ventilator's ``bye`` came (or did not within BYE_WAIT_S)."""
        return self.held() == 0 and (self.bye or time.monotonic() > self._left_at + BYE_WAIT_S)

    def check_peers(self) -> None:
        for p in self.peers:
            p.check()

    def reload(self, _cfg: Config | None) -> None:
        """The detector is built once; a new one needs a restart."""
        self.log.info("reload: nothing to change", detector=self.detector.name, held=self.held())

    def gauges(self) -> dict:
        return {"held": ("frames taken and not yet done", (), {(): self.held()})}

    def stats_extra(self) -> dict[str, Any]:
        busy = self.busy_s + (self.detection.busy_s if self.detection else 0.0)
        return {"name": self.name, "busy_seconds": round(busy, 3)}
