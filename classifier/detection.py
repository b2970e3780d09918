"""The detection thread of a ``camwire classifier`` worker (:class:`Detection`): it runs the
detector over the batches the worker's loop hands it and pushes each frame's result back over an
inproc PUSH; and how a frame's ``result`` message is built (:func:`result_parts`), by that thread
and by the loop for frames it answers with an error."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import zmq

from camwire.classifier.detectors import Detector, FrameResult
from camwire.common import pixels, wire
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter
from camwire.common.metrics import INFERENCE_SECONDS
from camwire.common.sockets import make_socket, send_nowait

PIPE_SEND_WAIT_MS = 500

Batch = list[tuple[wire.FrameHeader, list[zmq.Frame]]]


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
