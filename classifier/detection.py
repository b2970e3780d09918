"""The detection thread of a ``camwire classifier`` worker (:class:`Detection`): it runs the
detector over the batches the worker's loop hands it and pushes each frame's result back over an
inproc PUSH; and how a frame's ``result`` message is built (:func:`result_parts`), by that thread
and by the loop for frames it answers with an error.

A result that found something (or a covered lens) carries the frame's pixels as an LZ4 block
(common.pixels.pack_pixels), not a JPEG: the sink encodes one only for the few snapshots and
frames it keeps, so no worker pays for the many it would throw away. To a sink on this host they
go raw, or, for a frame that came in shared memory, not at all: the result names the slot."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable

import zmq

from camwire.classifier import detectors
from camwire.classifier.detectors import Detector, FrameResult
from camwire.common import pixels, wire
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter
from camwire.common.metrics import INFERENCE_SECONDS
from camwire.common.sockets import make_socket, send_nowait

PIPE_SEND_WAIT_MS = 500

# each frame's header and its parts: zmq.Frames as received, or buffers (a view of shared memory)
Batch = list[tuple[wire.FrameHeader, list[Any]]]


def result_parts(header: wire.FrameHeader, worker: str, detector: str, result: FrameResult | None = None,
                 image: Any = None, error: str | None = None, infer_ms: float = 0.0,
                 pixel_enc: str = "lz4") -> list[bytes]:
    """A frame's ``result`` (part 0), and the pixels the detector saw (``image``) as part 1 when
    something was found or the lens is covered: raw or an LZ4 block (``pixel_enc``;
    ``Result.image`` says their size), copied out of ``image``, which may be a view of shared memory.
    To a sink on this host (``pixel_enc`` raw) a frame that came in shared memory sends no part 1:
    the result names its slot (``image_enc = "shm"``, ``image_shm``), the worker leaves the slot
    held (classifier.worker_loop) and the sink copies the pixels out and releases it.

    The detector's own result is converted and validated here, once; one the sink could not
    decode (a NaN box) becomes a result with the error instead. Boxes leave in source pixels: a
    frame the extractor resized for detection (``header.source``) has them scaled up to the
    source, and the result says the source's size; ``image`` says the pixels' own."""
    detections: list[wire.Detection] = []
    flags = wire.Flags()
    if result is not None:
        try:
            detections, flags = result.to_wire()
        except (ValueError, TypeError) as exc:  # msgspec.ValidationError is a ValueError
            error = error or f"detector gave an invalid result: {exc}"
    if header.source is not None:
        detections = to_source(detections, header)
    packed, size, enc, in_slot = None, None, "raw" if pixel_enc == "raw" else "lz4", None
    if image is not None and error is None and (detections or flags.covered):
        if pixel_enc == "raw" and (size := in_place(header)) is not None:
            enc, in_slot = "shm", header.shm  # the sink copies them out of the slot: no copy here
        # in the camera's format (YUV 4:2:0: half of BGR's bytes); the sink makes a JPEG of them
        # (in BGR) only if it keeps this frame
        elif (packed := pixels.pack_pixels(image, pixel_enc, header.format)) is not None:
            size = packed[1]
    width, height = header.source or (header.width, header.height)
    body = wire.Result(camera=header.camera, seq=header.seq, ts_ns=header.ts_ns, width=width, height=height,
                       pts=header.pts, worker=worker, detector=detector, detections=detections,
                       flags=flags, error=error[:1000] if error else None, infer_ms=min(infer_ms, 1e6),
                       motion=header.motion, prev=header.prev, image=size, image_enc=enc, image_shm=in_slot,
                       image_pix=header.format, source_shm=header.source_shm if size else None,
                       matrix=header.matrix)
    return [wire.pack(body), packed[0]] if packed else [wire.pack(body)]


def in_place(header: wire.FrameHeader) -> tuple[int, int, int] | None:
    """(width, height, channels) of a frame's pixels as they lie in its shared-memory slot, when a
    result can name the slot instead of carrying them (8-bit, as common.pixels.pack_pixels would
    send them: no alpha to strip); None for a frame that came inline."""
    if header.shm is None or header.dtype != "uint8" or header.channels == 4:
        return None
    return header.width, header.height, 3 if header.format in ("bgr", "rgb") else 1


def to_source(detections: list[wire.Detection], header: wire.FrameHeader) -> list[wire.Detection]:
    """Boxes found in a resized frame's pixels, in its source's (``header.source``). Held within
    the wire's bound, so an absurd box a detector gave cannot make the whole result one the sink
    refuses."""
    if not detections or header.source is None:
        return detections
    sx, sy = header.source[0] / header.width, header.source[1] / header.height
    return [wire.Detection(d.label, d.confidence, (_coord(d.box[0] * sx), _coord(d.box[1] * sy),
                                                   _coord(d.box[2] * sx), _coord(d.box[3] * sy)))
            for d in detections]


def _coord(v: float) -> float:
    return round(min(max(v, -wire.LIMIT), wire.LIMIT), 1)  # the detectors' own rounding (Detection.to_map)


SHM_RECYCLED = "shm_recycled: the frame's shared-memory slot was reused before detection finished"


class Detection(threading.Thread):
    """Runs the detector over batches from a queue; results go back over an inproc PUSH.

    ``still_valid(header)``: whether a frame's pixels are still its own (a frame in shared
    memory: its slot not reused meanwhile). Asked of each frame after the detector ran on it and
    its pixels were copied into its result: a frame it says False of gets a result with the
    error ``shm_recycled`` (counted ``failed/shm_recycled``) instead, since both may have read
    another frame. None: every frame's pixels are its own (they came in the message)."""

    def __init__(self, ctx: zmq.Context, detector: Detector, pipe_addr: str, worker: str,
                 batches: queue.Queue[Batch | None], counters: Counters, max_frame_bytes: int, log: Any,
                 still_valid: Callable[[wire.FrameHeader], bool] | None = None, pixel_enc: str = "lz4") -> None:
        super().__init__(name="detection", daemon=True)
        self.pixel_enc = pixel_enc  # how a result carries its pixels to the sink (result_parts)
        self.ctx, self.detector, self.pipe_addr, self.worker = ctx, detector, pipe_addr, worker
        self.batches, self.counters, self.max_frame_bytes = batches, counters, max_frame_bytes
        self.log, self.still_valid = log, still_valid
        self.repeats = RepeatLimiter(log)  # this thread's own: a failing detector logs once a minute
        self.busy_s = 0.0
        self.finished = False  # set on a clean stop, so the watcher does not restart it
        self.stopping = threading.Event()  # the worker no longer reads results

    def run(self) -> None:
        pipe = make_socket(self.ctx, zmq.PUSH, connect=self.pipe_addr)
        try:
            while (batch := self.batches.get()) is not None:
                results = self.process(batch)
                # held no longer than its results need: a frame's pixels may be a view of a
                # shared-memory slot, which must not stay pinned while this thread waits for more
                del batch
                for parts in results:
                    # the main thread always reads; the bounded wait only guards a stopping worker
                    while not send_nowait(pipe, parts, PIPE_SEND_WAIT_MS):
                        if self.stopping.is_set():  # the worker has stopped reading: say so, never spin
                            self.counters.add("dropped", "result_unsent")
                            break
            self.finished = True
        finally:
            pipe.close()

    def converted(self, src: str, dst: str) -> None:
        """A frame converted for the detector (counted ``converted/SRC_to_DST``); said once in the
        log, since a camera's pixel_format set to what the detector takes saves it."""
        self.counters.add("converted", f"{src}_to_{dst}")
        if self.counters.get("converted", f"{src}_to_{dst}") == 1:
            self.log.info("frames converted for the detector: a camera's pixel_format set to what it takes "
                          "saves that", sent=src, detector_takes=dst, detector=self.detector.name)

    def process(self, batch: Batch) -> list[list[bytes]]:
        """Each frame's result parts (bytes only: nothing refers to the frames' pixels after)."""
        decoded, out = [], []
        for header, parts in batch:
            try:
                _, image = pixels.decode_frame([_buffer(p) for p in parts], self.max_frame_bytes)
                # the batch's header, not the one decoded: a shared-memory frame's names its slot
                # (still_valid asks of it) though its pixels may be handed over as an inline part
                decoded.append((header, image))
            except wire.MalformedMessage as exc:
                self.counters.add("malformed", exc.reason)
                out.append(result_parts(header, self.worker, self.detector.name, error=f"malformed: {exc}"))
        started = time.perf_counter()
        error = None
        try:
            results = detectors.detect(self.detector, decoded, self.converted) if decoded else []
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
            parts = result_parts(header, self.worker, self.detector.name, result, image, error=error,
                                 infer_ms=round(1000 * elapsed / len(decoded), 3), pixel_enc=self.pixel_enc)
            # asked only now, after the detector and the copy in result_parts read the pixels
            # (a seqlock's reader: check after reading), so a slot reused during either is caught
            if self.still_valid is not None and not self.still_valid(header):
                self.counters.add("failed", "shm_recycled")
                parts = result_parts(header, self.worker, self.detector.name, error=SHM_RECYCLED)
            else:
                self.counters.add("processed", header.camera)
            out.append(parts)
        return out


def _buffer(part: Any) -> Any:
    """A part's bytes: a zmq.Frame's buffer, or a buffer as it is (a view of shared memory)."""
    return part.buffer if isinstance(part, zmq.Frame) else part
