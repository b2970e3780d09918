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

This module is the process: its flags, what it refuses before it starts (:func:`check`), and
:func:`main`, which makes the sockets and hands them to the loop's handlers
(classifier.worker_loop.Worker); the detection thread and result building are in
classifier.detection.
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

import zmq

from camwire.classifier.detectors import make_detector
from camwire.classifier.worker_loop import HEARTBEAT_S, Worker
from camwire.common import wire
from camwire.common.config import Config
from camwire.common.curve import SERVER_OF
from camwire.common.daemon import Daemon
from camwire.common.logs import configure
from camwire.common.units import duration, positive, size

TICK_S = 0.25  # how soon a dead detection thread is noticed
SINK_HWM = 1000
DEALER_HWM = 100  # ready/heartbeat queued while the ventilator is away; past it they are dropped
LABELS = {"processed": ("camera",), "dropped": ("reason",), "detector_errors": ("error",),
          "failed": ("reason",), "late": ("reason",)}


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

    from camwire.classifier.detectors import NAMES, _registry, parse_options
    from camwire.common.sockets import check_addresses

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
