"""``camwire classifier``: a worker that asks the ventilator for frames and runs a detector on them.

Sockets, all owned by the main thread (run by common.daemon):
  - DEALER to the ventilator: sends ``ready`` (credits, frames done, ``leaving``) and
    ``heartbeat``; receives frames, ``heartbeat``, ``reset``, ``bye``, and ``status``/``eos``/
    ``workers`` for the sink;
  - PUSH to the sink: one ``result`` per frame taken, always, even when the frame was malformed
    or too large, or the detector or its thread failed (``error`` says why), plus the
    ``status``/``eos``/``workers`` messages passed on unchanged;
  - PULL (inproc) from the detection thread, which pushes each result as it is made.
Every send is non-blocking: a ventilator or sink that is away for hours costs counted drops,
never a worker stuck in a send. A wrong ``--connect`` or ``--sink`` is warned about with the
address (common.sockets.PeerWatch).

The detector runs in its own thread, so heartbeats and status keep flowing during a slow batch.
That thread is watched: if it dies, the frames it held get results with an error, the worker
stops heartbeating and tells the ventilator it is out (``leaving``) until the thread is started
again, then asks for work anew. A worker never heartbeats with nothing behind it.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import threading
import time
from typing import Any

import zmq

from classifier.detectors import Detector, FrameResult, make_detector
from common import pixels, wire
from common.config import Config
from common.counters import Counters
from common.daemon import Daemon
from common.logs import RepeatLimiter, configure
from common.metrics import INFERENCE_SECONDS
from common.curve import SERVER_OF
from common.sockets import make_socket, send_nowait
from common.units import duration, positive, size

HEARTBEAT_S = 1.0
TICK_S = 0.25  # how soon a dead detection thread is noticed
LEAVE_TIMEOUT_S = 4.0  # longest a stopping worker spends finishing frames it already took
BYE_WAIT_S = 1.0
SINK_HWM = 1000
DEALER_HWM = 100  # ready/heartbeat queued while the ventilator is away; past it they are dropped
PIPE_SEND_WAIT_MS = 500
LABELS = {"processed": ("camera",), "dropped": ("reason",), "detector_errors": ("error",),
          "failed": ("reason",), "late": ("reason",)}

Key = tuple[str, int]
Batch = list[tuple[wire.FrameHeader, list[zmq.Frame]]]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connect", required=True, metavar="ADDR", help="the ventilator's backend")
    p.add_argument("--sink", required=True, metavar="ADDR", help="the sink's bind address")
    add_detector_arguments(p)
    p.add_argument("--name", help="worker name in logs and stats (default: host-pid, or classifier-N)")
    p.add_argument("--serves", metavar="NAME", help="the detector name this worker serves: cameras whose "
                   "detector is NAME get their frames from it (default: the --detector spec as written)")
    p.add_argument("--instance", type=int, metavar="N", help="systemd's %%i: names the worker classifier-N "
                   "and serves metrics on --metrics-port + N, so one config serves a pool")
    p.add_argument("--max-frame-bytes", type=positive(size), default=wire.DEFAULT_MAX_FRAME_BYTES, metavar="SIZE",
                   help="largest frame decoded (its pixels); a larger one gets a result with an error")
    p.add_argument("--stats", metavar="PATH", help="write counters as JSON here at exit")


# detector options that ``camwire run`` hands to its workers: (flag, type, default, help)
DETECTOR_OPTIONS: list[tuple[str, type, Any, str]] = [
    ("--batch", int, 1, "frames per detector call (the worker's credits)"),
    ("--batch-wait", duration, 0.02, "longest wait for a batch to fill once its first frame is in"),
    ("--confidence", float, 0.25, "onnx/roboflow: lowest confidence kept"),
    ("--iou", float, 0.45, "onnx/roboflow: NMS overlap threshold"),
    ("--classes", str, None, "onnx/roboflow: comma-separated labels to keep (default: all)"),
    ("--labels", str, None, "onnx: a file of class names, one per line (default: the model's or, for an SSD, COCO's)"),
    ("--api-url", str, "http://localhost:9001", "roboflow: the Inference server"),
    ("--infer-timeout", duration, 10.0, "roboflow: how long before a call to the server counts as failed"),
    ("--concurrency", int, 4, "roboflow: requests kept in flight per worker"),
]


def check(args: argparse.Namespace) -> None:
    """What a worker would refuse, judged before it starts and without loading a model (camwire.cli,
    check-config, a reload; ``camwire run`` for its detector flags): an address without a transport,
    ``--batch``/``--concurrency`` below 1, a ``--detector`` spec naming an unknown detector, with
    options a built-in one refuses, or an ``onnx:PATH`` (or ``--labels``) with no file there.
    ValueError naming the flag."""
    from pathlib import Path

    from classifier.detectors import NAMES, _registry, parse_options
    from common.sockets import check_addresses

    check_addresses(args, "connect", "sink")
    served = getattr(args, "serves", None) or getattr(args, "detector", None)
    if served is not None and not 0 < len(served) <= 128:
        raise ValueError(f"--serves: the detector name a worker serves is 1 to 128 characters (a longer --detector "
                         f"spec needs --serves NAME), not {len(served)}")
    for dest in ("batch", "concurrency"):
        value = getattr(args, dest, None)
        if value is not None and value < 1:
            raise ValueError(f"--{dest} must be at least 1, not {value}")
    for dest in ("confidence", "iou"):
        value = getattr(args, dest, None)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"--{dest} is a share from 0 to 1, not {value}")
    if getattr(args, "labels", None) and not Path(args.labels).is_file():
        raise ValueError(f"--labels {args.labels}: no such file")
    spec = getattr(args, "detector", None)
    if not spec:
        return
    for item in str(spec).split("+"):
        name, _, arg = item.strip().partition(":")
        try:
            if name not in NAMES:
                raise ValueError(f"unknown detector {name!r}; known: {', '.join(sorted(NAMES))}")
            if name == "onnx":  # the model is loaded only by the worker itself: here, that it is there
                path = ({"path": arg} if "=" not in arg else parse_options(arg)).get("path")
                if not path or not Path(path).is_file():
                    raise ValueError(f"no model file at {path}" if path else "onnx needs a model path: onnx:model.onnx")
            elif name == "roboflow":
                if not arg:
                    raise ValueError("roboflow needs a model id: roboflow:MODEL_ID")
            elif getattr(args, "build_detectors", True):
                # a built-in detector is cheap to build: built, its options are judged as the worker will
                # (not where another daemon judges the whole file: that would load OpenCV there)
                _registry()[name](arg, vars(args))
            else:
                parse_options(arg)
        except ValueError as exc:
            raise ValueError(f"--detector {spec!r}: {exc}") from None


def add_detector_arguments(p: argparse.ArgumentParser) -> None:
    """Options that ``camwire run`` hands to its workers unchanged."""
    p.add_argument("--detector", required=True, metavar="SPEC",
                   help="hog | covered[:frames=N] | onnx:PATH | roboflow:MODEL_ID; join with + "
                        "(motion is found by the extractor, in every frame)")
    for flag, kind, default, help_text in DETECTOR_OPTIONS:
        p.add_argument(flag, type=kind, default=default, help=help_text)


def detector_argv(args: argparse.Namespace) -> list[str]:
    argv = ["--detector", args.detector]
    for flag, _, _, _ in DETECTOR_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            argv += [flag, str(value)]
    return argv


def result_parts(header: wire.FrameHeader, worker: str, detector: str, result: FrameResult | None = None,
                 image: Any = None, error: str | None = None, infer_ms: float = 0.0) -> list[bytes]:
    """A frame's ``result`` (and its JPEG snapshot when something was found or the lens is covered).

    The detector's own result is converted and validated here, once; one the sink could not
    decode (a NaN box) becomes a result with the error instead."""
    detections: list[wire.Detection] = []
    flags = wire.Flags()
    if result is not None:
        try:
            detections, flags = result.to_wire()
        except (ValueError, TypeError) as exc:  # msgspec.ValidationError is a ValueError
            error = error or f"detector gave an invalid result: {exc}"
    body = wire.Result(camera=header.camera, seq=header.seq, ts_ns=header.ts_ns, width=header.width,
                       height=header.height, pts=header.pts, worker=worker, detector=detector, detections=detections,
                       flags=flags, error=error[:1000] if error else None, infer_ms=min(infer_ms, 1e6),
                       motion=header.motion, prev=header.prev)
    parts = [wire.pack(body)]
    if image is not None and error is None and (detections or flags.covered):
        parts.append(pixels.encode_jpeg(image))  # the sink saves it as the event's snapshot
    return parts


class Detection(threading.Thread):
    """Runs the detector over batches from a queue; results go back over an inproc PUSH."""

    def __init__(self, ctx: zmq.Context, detector: Detector, pipe_addr: str, worker: str,
                 batches: queue.Queue[Batch | None], counters: Counters, max_frame_bytes: int, log: Any) -> None:
        super().__init__(name="detection", daemon=True)
        self.ctx, self.detector, self.pipe_addr, self.worker = ctx, detector, pipe_addr, worker
        self.batches, self.counters, self.max_frame_bytes = batches, counters, max_frame_bytes
        self.log = log
        self.repeats = RepeatLimiter(log)  # this thread's own: a failing detector logs once a minute
        self.busy_s = 0.0
        self.finished = False  # set on a clean stop, so the watcher does not restart it
        self.stopping = threading.Event()  # the worker no longer reads results

    def run(self) -> None:
        pipe = make_socket(self.ctx, zmq.PUSH, connect=self.pipe_addr)
        try:
            while (batch := self.batches.get()) is not None:
                for parts in self.process(batch):
                    # the main thread always reads; the bounded wait only guards a stopping worker
                    while not send_nowait(pipe, parts, PIPE_SEND_WAIT_MS):
                        if self.stopping.is_set():  # the worker has stopped reading: say so, never spin
                            self.counters.add("dropped", "result_unsent")
                            break
            self.finished = True
        finally:
            pipe.close()

    def process(self, batch: Batch) -> list[list[bytes]]:
        decoded, out = [], []
        for header, parts in batch:
            try:
                decoded.append(pixels.decode_frame([p.buffer for p in parts], self.max_frame_bytes))
            except wire.MalformedMessage as exc:
                self.counters.add("malformed", exc.reason)
                out.append(result_parts(header, self.worker, self.detector.name, error=f"malformed: {exc}"))
        started = time.perf_counter()
        error = None
        try:
            results = self.detector.detect(decoded) if decoded else []
            if len(results) != len(decoded):
                raise RuntimeError(f"{len(results)} results for {len(decoded)} frames")
        except Exception as exc:  # noqa: BLE001 - a model failing on a batch must not take the worker down
            kind = type(exc).__name__
            error = f"{kind}: {exc}"
            self.counters.add("detector_errors", kind)
            self.repeats(f"detector:{error}", "detector failed; its frames get results with the error",
                         level="error", exc_info=True, error=error[:500], batch=len(decoded))
            results = [FrameResult() for _ in decoded]
        elapsed = time.perf_counter() - started
        self.counters.add("batches")
        self.busy_s += elapsed
        INFERENCE_SECONDS.labels(self.detector.name).observe(elapsed)
        for (header, image), result in zip(decoded, results):
            self.counters.add("processed", header.camera)
            out.append(result_parts(header, self.worker, self.detector.name, result, image, error=error,
                                    infer_ms=round(1000 * elapsed / len(decoded), 3)))
        return out


class Worker:
    """The dealer's and the detection pipe's handlers, batching, and the detection thread's care."""

    def __init__(self, daemon: Daemon, dealer: zmq.Socket, sink: zmq.Socket, pipe: zmq.Socket, pipe_addr: str,
                 detector: Detector, batch: int, batch_wait_s: float, max_frame_bytes: int, name: str) -> None:
        self.daemon, self.dealer, self.sink, self.pipe, self.pipe_addr = daemon, dealer, sink, pipe, pipe_addr
        self.detector, self.batch, self.batch_wait_s = detector, batch, batch_wait_s
        self.max_frame_bytes, self.name = max_frame_bytes, name
        self.serves: str | None = None  # the detector name it serves, said in every ready (main sets it)
        self.log, self.counters = daemon.log, daemon.counters
        self.batches: queue.Queue[Batch | None] = queue.Queue()
        self.detection: Detection | None = None
        self.pending: Batch = []  # taken, waiting to be handed to the detection thread
        self.first_pending_at = 0.0
        self.in_detection: dict[Key, wire.FrameHeader] = {}  # handed over, result not yet back
        self.down = False  # the detection thread died; we are out until it is started again
        self.bye = False
        self.leaving = False
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

    def start_batch(self, flush: bool = False) -> None:
        """Hand the next batch over when the thread is free and the batch full or waited long enough."""
        if self.in_detection or not self.pending or self.down:
            return
        now = time.monotonic()
        if len(self.pending) >= self.batch or now >= self.first_pending_at + self.batch_wait_s or flush:
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

    def heartbeat(self) -> None:
        """Only while the detection thread is alive: a worker that cannot work does not say it can."""
        thread = self.detection
        if not self.down and thread is not None and thread.is_alive():
            if not send_nowait(self.dealer, [wire.pack(wire.Heartbeat(worker=self.name))]):
                self.counters.add("dropped", "heartbeat_unsent")

    # -- stopping ----------------------------------------------------------------------------------

    def leave(self) -> None:
        """Tell the ventilator we are leaving, finish what we hold (bounded), then stop the thread."""
        self.leaving = True
        started = time.monotonic()
        self._send_ready(0, [], leaving=True)
        self.log.info("leaving: finishing the frames already taken", held=self.held())
        poller = zmq.Poller()
        poller.register(self.dealer, zmq.POLLIN)
        poller.register(self.pipe, zmq.POLLIN)
        while True:
            now = time.monotonic()
            if (self.held() == 0 and (self.bye or now > started + BYE_WAIT_S)) or now > started + LEAVE_TIMEOUT_S:
                break
            poller.poll(50)
            self.daemon.drain(self.pipe)
            self.daemon.drain(self.dealer)
            self.check_detection()
            self.start_batch(flush=True)
        if self.held():
            self.log.warning("left with frames unfinished", frames=self.held())
        self.batches.put(None)
        if self.detection is not None:
            self.detection.stopping.set()
            self.detection.join(timeout=5.0)

    def stats_extra(self) -> dict[str, Any]:
        busy = self.busy_s + (self.detection.busy_s if self.detection else 0.0)
        return {"name": self.name, "busy_seconds": round(busy, 3)}


def main(args: argparse.Namespace) -> int:
    name = args.name or (f"classifier-{args.instance}" if args.instance is not None
                         else f"{socket.gethostname()}-{os.getpid()}")
    log = configure("classifier").bind(worker=name)
    daemon = Daemon("worker", args, LABELS, log=log)  # metrics: camwire_worker_*; signals handled from here on
    detector = make_detector(args.detector, vars(args))  # may take a while: a model loads
    pipe_addr = f"inproc://results-{os.getpid()}"
    pipe = daemon.socket(zmq.PULL, bind=pipe_addr, linger=0)
    dealer = daemon.socket(zmq.DEALER, identity=name.encode(), sndhwm=DEALER_HWM)
    sink = daemon.socket(zmq.PUSH, sndhwm=SINK_HWM, linger=5000)
    peers = [daemon.peer_watch(dealer, args.connect, SERVER_OF["connect"]),  # they connect the sockets
             daemon.peer_watch(sink, args.sink, SERVER_OF["sink"])]
    worker = Worker(daemon, dealer, sink, pipe, pipe_addr, detector, args.batch, args.batch_wait,
                    args.max_frame_bytes, name)
    worker.serves = args.serves or args.detector
    daemon.on(dealer, worker.on_dealer)
    daemon.on(pipe, worker.on_pipe)
    daemon.watch("detection", worker.new_detection)
    daemon.every(HEARTBEAT_S, worker.heartbeat)
    daemon.every(TICK_S, worker.check_detection)
    if args.batch > 1:  # a batch of one starts as its frame comes; a bigger one may need its wait ended
        daemon.every(max(0.005, args.batch_wait / 2), worker.start_batch)
    daemon.every(1.0, lambda: [p.check() for p in peers])
    daemon.stats_extra(worker.stats_extra)
    daemon.gauges(lambda: {"held": ("frames taken and not yet done", (), {(): worker.held()})})

    def reloaded(_cfg: Config | None) -> None:  # the detector is built once; a new one needs a restart
        log.info("reload: nothing to change", detector=detector.name, held=worker.held())

    daemon.on_reload(reloaded)

    def cleanup() -> None:
        try:
            worker.leave()
        finally:
            for p in peers:
                p.close()

    worker._send_ready(args.batch, [])
    log.info("classifier started", detector=detector.name, batch=args.batch, connect=args.connect)
    code = daemon.run(cleanup=cleanup)
    log.info("classifier stopped", stats=daemon.stats())
    return code
