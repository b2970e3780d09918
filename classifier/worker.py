"""``camwire classifier``: a worker that asks the ventilator for frames and runs a detector on them.

Sockets, all owned by the main thread:
  - DEALER to the ventilator: sends ``ready`` (credits, frames done, ``leaving`` at shutdown) and
    ``heartbeat``; receives frames, ``heartbeat``, ``reset``, ``bye``, and ``status``/``eos``/
    ``workers`` for the sink;
  - PUSH to the sink: one ``result`` per frame taken, always, even when decoding or the detector
    failed (``error`` says why), plus the ``status``/``eos``/``workers`` maps passed on unchanged;
  - PAIR (inproc) from the detection thread, which sends each result as it is made.
The detector runs in its own thread, so heartbeats and status keep flowing during a slow batch.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import threading
import time
from typing import Any

import structlog
import zmq

from classifier.detectors import Detector, FrameResult, make_detector
from common import wire
from common.counters import Counters, write_stats
from common.lifecycle import StopFlag
from common.logs import configure
from common.metrics import INFERENCE_SECONDS, register_stats
from common.sockets import make_socket

HEARTBEAT_S = 1.0
LEAVE_TIMEOUT_S = 4.0  # longest a stopping worker spends finishing frames it already took
BYE_WAIT_S = 1.0
SINK_HWM = 1000
METRIC_LABELS = {"processed": ("camera",), "malformed": ("reason",), "errors": ("error",), "dropped": ("reason",)}

Batch = list[tuple[wire.FrameHeader, list[zmq.Frame]]]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connect", required=True, metavar="ADDR", help="the ventilator's backend")
    p.add_argument("--sink", required=True, metavar="ADDR", help="the sink's bind address")
    add_detector_arguments(p)
    p.add_argument("--name", help="worker name in logs and stats (default: host-pid, or classifier-N)")
    p.add_argument("--instance", type=int, metavar="N", help="systemd's %%i: names the worker classifier-N "
                   "and serves metrics on --metrics-port + N, so one config serves a pool")
    p.add_argument("--stats", metavar="PATH", help="write counters as JSON here at exit")


# detector options that ``camwire run`` hands to its workers: (flag, type, default, help)
DETECTOR_OPTIONS: list[tuple[str, type, Any, str]] = [
    ("--batch", int, 1, "frames per detector call (the worker's credits)"),
    ("--batch-wait", float, 20.0, "longest wait in ms for a batch to fill once its first frame is in"),
    ("--confidence", float, 0.25, "onnx/roboflow: lowest confidence kept"),
    ("--iou", float, 0.45, "onnx/roboflow: NMS overlap threshold"),
    ("--classes", str, None, "onnx/roboflow: comma-separated labels to keep (default: all)"),
    ("--labels", str, None, "onnx: a file of class names, one per line (default: the model's metadata)"),
    ("--api-url", str, "http://localhost:9001", "roboflow: the Inference server"),
    ("--infer-timeout", float, 10.0, "roboflow: seconds before a call to the server counts as failed"),
    ("--concurrency", int, 4, "roboflow: requests kept in flight per worker"),
]


def add_detector_arguments(p: argparse.ArgumentParser) -> None:
    """Options that ``camwire run`` hands to its workers unchanged."""
    p.add_argument("--detector", required=True, metavar="SPEC",
                   help="motion | hog | covered[:frames=N] | onnx:PATH | roboflow:MODEL_ID; join with +")
    for flag, kind, default, help_text in DETECTOR_OPTIONS:
        p.add_argument(flag, type=kind, default=default, help=help_text)


def detector_argv(args: argparse.Namespace) -> list[str]:
    argv = ["--detector", args.detector]
    for flag, _, _, _ in DETECTOR_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            argv += [flag, str(value)]
    return argv


class Detection(threading.Thread):
    """Runs the detector over batches from a queue; results go back over an inproc PAIR."""

    def __init__(self, ctx: zmq.Context, detector: Detector, pipe_addr: str, worker: str) -> None:
        super().__init__(name="detection", daemon=True)
        self.ctx, self.detector, self.pipe_addr, self.worker = ctx, detector, pipe_addr, worker
        self.batches: queue.Queue[Batch | None] = queue.Queue()
        self.counters = Counters()
        self.busy_s = 0.0
        self.log = structlog.get_logger().bind(worker=worker)

    def run(self) -> None:
        pipe = make_socket(self.ctx, zmq.PAIR, connect=self.pipe_addr)
        try:
            while (batch := self.batches.get()) is not None:
                for parts in self.process(batch):
                    pipe.send_multipart(parts)
        finally:
            pipe.close()

    def process(self, batch: Batch) -> list[list[bytes]]:
        decoded, out = [], []
        for header, parts in batch:
            try:
                decoded.append(wire.decode_frame([p.buffer for p in parts]))
            except wire.MalformedMessage as exc:
                self.counters.add("malformed", exc.reason)
                out.append(self._result(header, FrameResult(), None, error=f"malformed: {exc.reason}"))
        started = time.perf_counter()
        try:
            results = self.detector.detect(decoded) if decoded else []
            error = None
        except Exception as exc:  # a model failing on one batch must not take the worker down
            self.log.exception("detector failed", batch=len(decoded))
            self.counters.add("errors", type(exc).__name__)
            results, error = [FrameResult() for _ in decoded], f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - started
        self.counters.add("batches")
        self.busy_s += elapsed
        INFERENCE_SECONDS.labels(self.detector.name).observe(elapsed)
        for (header, image), result in zip(decoded, results, strict=True):
            self.counters.add("processed", header.camera)
            out.append(self._result(header, result, image, error=error,
                                    infer_ms=round(1000 * elapsed / len(decoded), 3)))
        return out

    def _result(self, header: wire.FrameHeader, result: FrameResult, image, error: str | None,
                infer_ms: float = 0.0) -> list[bytes]:
        body: dict[str, Any] = {
            "camera": header.camera, "seq": header.seq, "ts_ns": header.ts_ns, "pts": header.pts,
            "width": header.width, "height": header.height, "worker": self.worker,
            "detector": self.detector.name, "detections": [d.to_map() for d in result.detections],
            "flags": result.flags, "error": error, "infer_ms": infer_ms,
        }
        parts = [wire.pack("result", body)]
        if image is not None and (result.detections or result.flags.get("covered")):
            parts.append(wire.encode_jpeg(image))  # the sink saves it as the event's snapshot
        return parts


class Worker:
    def __init__(self, dealer: zmq.Socket, sink: zmq.Socket, pipe: zmq.Socket, detection: Detection,
                 batch: int, batch_wait_s: float, name: str, log) -> None:
        self.dealer, self.sink, self.pipe, self.detection = dealer, sink, pipe, detection
        self.batch, self.batch_wait_s, self.name, self.log = batch, batch_wait_s, name, log
        self.counters = Counters()
        self.pending: Batch = []
        self.first_pending_at = 0.0
        self.in_detection = 0  # frames handed to the detection thread and not yet back

    def held(self) -> int:
        return len(self.pending) + self.in_detection

    def run(self, stop: StopFlag) -> None:
        poller = zmq.Poller()
        poller.register(self.dealer, zmq.POLLIN)
        poller.register(self.pipe, zmq.POLLIN)
        self._send_ready(self.batch, [])
        next_beat = time.monotonic() + HEARTBEAT_S
        leave_started, leave_deadline = 0.0, None
        bye = False
        while True:
            now = time.monotonic()
            if stop.is_set() and leave_deadline is None:
                leave_started, leave_deadline = now, now + LEAVE_TIMEOUT_S
                self._send_ready(0, [], leaving=True)
                self.log.info("leaving: finishing the frames already taken", held=self.held())
            # done leaving: nothing held and the ventilator said bye (or is gone: no bye in BYE_WAIT_S)
            if leave_deadline is not None and ((self.held() == 0 and (bye or now > leave_started + BYE_WAIT_S))
                                               or now > leave_deadline):
                if self.held():
                    self.log.warning("left with frames unfinished", frames=self.held())
                return
            timeout = next_beat - now
            if self.pending:
                timeout = min(timeout, self.first_pending_at + self.batch_wait_s - now)
            events = dict(poller.poll(timeout=max(0, int(timeout * 1000)) + 1))
            if self.pipe in events:
                self._collect_results()
            if self.dealer in events:
                bye = self._drain_dealer() or bye
            self._maybe_start_batch(time.monotonic(), flush=leave_deadline is not None)
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + HEARTBEAT_S
                self.dealer.send(wire.pack("heartbeat", {"worker": self.name}))

    def _drain_dealer(self) -> bool:
        bye = False
        while True:
            try:
                parts = self.dealer.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return bye
            try:
                msg = wire.unpack(parts[0].buffer)
                kind = msg["kind"]
                if kind == "frame":
                    header = wire.peek_frame([p.buffer for p in parts])
                    if not self.pending:
                        self.first_pending_at = time.monotonic()
                    self.pending.append((header, parts))
                elif kind in ("status", "eos", "workers"):
                    self._to_sink([parts[0].bytes])
                elif kind == "reset":  # the ventilator restarted and lost our credits
                    self._send_ready(max(0, self.batch - self.held()), [])
                elif kind == "bye":
                    bye = True
                elif kind != "heartbeat":
                    raise wire.MalformedMessage("unexpected_kind", kind)
            except wire.MalformedMessage as exc:
                self.counters.add("malformed", exc.reason)
                self.log.warning("malformed message dropped", reason=exc.reason, detail=str(exc))
                if len(parts) == 2:  # it came as a frame and used a credit; give it back
                    self._send_ready(1, [])

    def _maybe_start_batch(self, now: float, flush: bool) -> None:
        if self.in_detection or not self.pending:
            return
        if len(self.pending) >= self.batch or now >= self.first_pending_at + self.batch_wait_s or flush:
            batch, self.pending = self.pending[: self.batch], self.pending[self.batch:]
            self.first_pending_at = now
            self.in_detection = len(batch)
            self.detection.batches.put(batch)

    def _collect_results(self) -> None:
        done = []
        while True:
            try:
                parts = self.pipe.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            body = wire.unpack(parts[0])
            done.append([body["camera"], body["seq"]])
            self._to_sink(parts)
        self.in_detection -= len(done)
        self.counters.add("results", n=len(done))
        if done:
            self._send_ready(len(done), done)

    def _to_sink(self, parts: list[bytes]) -> None:
        try:
            self.sink.send_multipart(parts, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.counters.add("dropped", "sink_full")

    def _send_ready(self, credits: int, done: list, leaving: bool = False) -> None:
        self.dealer.send(wire.pack("ready", {"worker": self.name, "credits": credits, "done": done,
                                             "leaving": leaving}))


def main(args: argparse.Namespace) -> int:
    name = args.name or (f"classifier-{args.instance}" if args.instance is not None
                         else f"{socket.gethostname()}-{os.getpid()}")
    log = configure("classifier").bind(worker=name)
    if args.batch < 1:
        log.error("--batch must be at least 1")
        return 2
    detector = make_detector(args.detector, vars(args))
    stop = StopFlag().install()
    pipe_addr = f"inproc://results-{os.getpid()}"
    with zmq.Context() as ctx:
        pipe = make_socket(ctx, zmq.PAIR, bind=pipe_addr, linger=0)
        dealer = make_socket(ctx, zmq.DEALER, connect=args.connect, identity=name.encode())
        sink = make_socket(ctx, zmq.PUSH, connect=args.sink, sndhwm=SINK_HWM, linger=5000)
        detection = Detection(ctx, detector, pipe_addr, name)
        detection.start()
        worker = Worker(dealer, sink, pipe, detection, args.batch, args.batch_wait / 1000.0, name, log)
        register_stats("worker", lambda: {**worker.counters.snapshot(), **detection.counters.snapshot(),
                                          "busy_seconds": round(detection.busy_s, 3)}, METRIC_LABELS,
                       lambda: {"held": ("frames taken and not yet done", (), {(): worker.held()})})
        log.info("classifier started", detector=detector.name, batch=args.batch, connect=args.connect)
        try:
            worker.run(stop)
        finally:
            detection.batches.put(None)
            detection.join(timeout=5.0)
            for sock in (dealer, sink, pipe):
                sock.close()
    stats = {**worker.counters.snapshot(), **detection.counters.snapshot(), "name": name,
             "busy_seconds": round(detection.busy_s, 3)}
    write_stats(args.stats, stats)
    log.info("classifier stopped", stats=stats)
    return 0
