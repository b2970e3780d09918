"""``camwire classifier``: a worker that asks its ventilator(s) for frames and runs a detector on them.

Sockets, all owned by the main thread (run by common.daemon):
  - a DEALER to each ventilator (``--connect``, one or several; classifier.links): sends
    ``ready`` (credits, frames done, ``leaving``) and ``heartbeat``; receives frames,
    ``heartbeat``, ``reset``, ``bye``, and ``status``/``eos``/``motion``/``workers`` for the sink.
    Each frame's done goes back over the link it came by;
  - a PUSH to each sink (``--sink``, one or several; classifier.sinks): one ``result`` per frame
    taken, always, even when the frame was malformed or too large, or the detector or its thread
    failed (``error`` says why), plus the ``status``/``eos``/``motion``/``workers`` messages passed
    on; each camera's to the one sink that owns it (rendezvous hashing, common.rendezvous), what
    is not per camera to every sink;
  - PULL (inproc) from the detection thread, which pushes each result as it is made.
Every send is non-blocking: a ventilator or sink that is away for hours costs counted drops,
never a worker stuck in a send. A wrong ``--connect`` or ``--sink`` is warned about with the
address (common.sockets.PeerWatch).

Credits: a worker asks for a window of frames, its batch plus the next frame plus what it finishes
during one round trip to the ventilator (measured by its heartbeats' echoes), bounded by
``--max-window`` (classifier.worker_loop.window_for), so a distant worker is as busy as a near one.
Each ventilator's link has its own window (sized by its own round trip), and the detection thread
takes their frames first come; a ventilator that goes away costs only its own link's credits.
A frame whose pixels are in its extractor's shared-memory ring (common.shm) is detected in place;
the slot's generation is checked after the detector ran, and the slot given back when its result
is out, or, when the result brings the frame's pixels to a sink on this host, left held and named
in it for the sink to copy out and give back.

The detector runs in its own thread, so heartbeats and status keep flowing during a slow batch.
That thread is watched: if it dies, the frames it held get results with an error, the worker
stops heartbeating and tells each ventilator it is out (``leaving``) until the thread is started
again, then asks for work anew. A worker never heartbeats with nothing behind it.

This module is the process: what it refuses before it starts (:func:`check`), and :func:`main`,
which builds the skeleton (common.daemon, named ``classifier``: its log lines, its metrics
``camwire_classifier_*``) and the worker (classifier.worker_loop.Worker: its sockets, handlers and
timers) and runs them; the detection thread and result building are in classifier.detection.
"""

from __future__ import annotations

import functools
import os
import socket

from camwire.classifier.threads import limit_threads
from camwire.classifier.detectors import make_detector
from camwire.classifier.detector_name import served_name
from camwire.classifier.links import HEARTBEAT_S
from camwire.classifier.worker_loop import Worker
from camwire.common.daemon import Daemon
from camwire.common.logs import configure
from camwire.common.settings import ClassifierSettings, RunSettings
from camwire.common.settings.model import as_dict

TICK_S = 0.25  # how soon a dead detection thread is noticed
RING_SWEEP_S = 10.0  # how often shared-memory rings not used for a while are unmapped (common.shm.Readers)
PEER_CHECK_S = 1.0  # how often an address that never answers is looked for (common.sockets.PeerWatch)
LABELS = {"processed": ("camera",), "dropped": ("reason",), "detector_errors": ("error",),
          "failed": ("reason",), "late": ("reason",), "shm": ("what",), "converted": ("conversion",)}


def check(args: ClassifierSettings | RunSettings, build_detectors: bool = True) -> None:
    """What a worker would refuse, judged before it starts and without loading a model (camwire.cli,
    check-config, a reload; ``camwire run`` for its detector flags): an address without a transport,
    ``--batch``/``--concurrency`` below 1, a ``--detector`` spec naming an unknown detector, with
    options a built-in one refuses, or an ``onnx:PATH`` (or ``--labels``) with no file there.
    ValueError naming the flag."""
    from pathlib import Path

    from camwire.classifier.detectors import NAMES, _registry, parse_options
    from camwire.common.sockets import check_addresses

    check_addresses(args, "connect", "sink")
    served = served_name(getattr(args, "serves", None) or getattr(args, "detector", None))
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
                if path and not Path(path).is_file():  # no path: the built-in model
                    raise ValueError(f"no model file at {path}")
            elif name == "roboflow":
                if not arg:
                    raise ValueError("roboflow needs a model id: roboflow:MODEL_ID")
            elif build_detectors:
                # a built-in detector is cheap to build: built, its options are judged as the worker will
                # (not where another daemon judges the whole file: that would load OpenCV there)
                _registry()[name](arg, as_dict(args))
            else:
                parse_options(arg)
        except ValueError as exc:
            raise ValueError(f"--detector {spec!r}: {exc}") from None


def main(args: ClassifierSettings) -> int:
    # HOST-classifier-N under systemd's camwire-classifier@N: two hosts' @1 are two workers (the
    # ventilator's ROUTER would let only the first of two peers with one name in, silently)
    name = args.name or (f"{socket.gethostname()}-classifier-{args.instance}" if args.instance is not None
                         else f"{socket.gethostname()}-{os.getpid()}")
    # signals are handled from here on; its metrics are camwire_classifier_*
    d = Daemon("classifier", args, LABELS, log=configure("classifier").bind(worker=name))
    threads = limit_threads(args.threads)  # before the model loads: its session takes the same number
    detector = make_detector(args.detector, {**as_dict(args), "threads": threads["onnxruntime"]})
    worker = Worker(d, args, detector, name)
    for link in worker.links:  # one handler per ventilator: a frame's done goes back where it came from
        d.on(link.dealer, functools.partial(worker.on_link, link))
    d.on(worker.pipe, worker.on_pipe)
    d.watch("detection", worker.new_detection)
    d.every(HEARTBEAT_S, worker.heartbeat)
    d.every(TICK_S, worker.check_detection)
    if args.batch > 1:  # a batch of one starts as its frame comes; a bigger one may need its wait ended
        d.every(max(0.005, args.batch_wait / 2), worker.start_batch)
    d.every(PEER_CHECK_S, worker.check_peers)
    d.every(RING_SWEEP_S, worker.sweep_rings)
    d.on_reload(worker.reload)
    d.stats_extra(lambda: {**worker.stats_extra(), "threads": threads})
    d.gauges(worker.gauges)
    worker.ask_for_work()
    d.log.info("classifier started", detector=detector.name, batch=args.batch, connect=args.connect, sink=args.sink,
               threads=threads)
    code = d.run(cleanup=worker.leave)
    d.log.info("classifier stopped", stats=d.stats())
    return code
