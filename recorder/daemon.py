"""``camwire recorder``: every camera recorded into a ring of fixed-duration files, clips kept
around events.

Sockets, owned by the main thread (one Poller over both):
  - SUB, connected to every ``--subscribe`` address (extractors' ``--publish``): frames
    (``lz4``/``raw``/``jpeg``, encoded here with libx264) or passed-through ``h264``/``hevc``
    packets (remuxed, never decoded), plus each camera's ``status`` and ``eos`` maps;
  - SUB, connected to ``--events`` (the sink's ``--publish``): ``event`` maps; each one of the
    ``--keep-types`` keeps the segments around it (see recorder.keep).
Files: ``DIR/<camera>/<UTC start>.mkv``, indexed in ``DIR/index.db`` (see recorder.index).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import zmq

from common import wire
from common.counters import Counters, write_stats
from common.lifecycle import StopFlag
from common.logs import configure
from common.metrics import register_stats
from common.paths import name_list
from common.sockets import make_socket
from recorder.index import Index
from recorder.keep import DEFAULT_KEEP_TYPES, Keeper
from recorder.ring import Encoding, Ring

SUB_HWM = 1000  # frames waiting in the recorder; beyond this the publisher drops (and we see the hole)
RETENTION_EVERY_S = 5.0


METRIC_LABELS = {"written": ("camera",), "segments": ("camera",), "gaps": ("camera",), "restarts": ("camera",),
                 "dropped": ("camera", "reason"), "deleted": ("reason",), "malformed": ("reason",),
                 "events_kept": ("type",), "errors": ("error",)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subscribe", action="append", required=True, metavar="ADDR",
                   help="an extractor's --publish address; repeat for more")
    p.add_argument("--dir", required=True, metavar="DIR", help="where the ring, its index and kept clips live")
    add_recording_arguments(p)
    p.add_argument("--events", metavar="ADDR", help="the sink's --publish address: keep the files around events")
    p.add_argument("--exit-when-ended", metavar="CAMERAS",
                   help="comma-separated cameras: exit once each has ended (files) and its last segment is closed")
    p.add_argument("--stats", metavar="PATH", help="write counters as JSON here at exit")


def add_recording_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``camwire run --record`` shares with ``camwire recorder``."""
    p.add_argument("--segment", type=float, default=60.0, metavar="S", help="seconds of video per file")
    p.add_argument("--retain", type=float, metavar="S", help="delete files older than this")
    p.add_argument("--max-bytes", type=_size, metavar="N", help="keep the ring under this size (k/M/G suffixes)")
    p.add_argument("--pre", type=float, default=10.0, metavar="S", help="keep this much before an event")
    p.add_argument("--post", type=float, default=10.0, metavar="S", help="keep this much after an event")
    p.add_argument("--keep-types", default=",".join(DEFAULT_KEEP_TYPES), metavar="TYPES",
                   help="comma-separated event types that keep a clip")
    p.add_argument("--preset", default="veryfast", help="x264 preset for frames that must be encoded")
    p.add_argument("--crf", type=int, default=23, help="x264 quality for frames that must be encoded")


def recording_argv(args: argparse.Namespace) -> list[str]:
    """The recording options of ``args`` as command-line words (what ``camwire run`` passes on)."""
    argv = ["--segment", str(args.segment), "--pre", str(args.pre), "--post", str(args.post),
            "--keep-types", args.keep_types, "--preset", args.preset, "--crf", str(args.crf)]
    if args.retain is not None:
        argv += ["--retain", str(args.retain)]
    if args.max_bytes is not None:
        argv += ["--max-bytes", str(args.max_bytes)]
    return argv


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    text = text.strip().lower().removesuffix("b")
    scale = units.get(text[-1:], 1)
    try:
        return int(float(text[:-1] if text[-1:] in units else text) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None


def main(args: argparse.Namespace) -> int:
    log = configure("recorder")
    if args.segment <= 0:
        raise ValueError("--segment must be more than 0 seconds")
    root = Path(args.dir)
    counters = Counters()
    register_stats("recorder", counters.snapshot, METRIC_LABELS)
    stop = StopFlag().install()
    index = Index(root)
    keeper = Keeper(root, index, args.pre, args.post, tuple(name_list(args.keep_types)), counters, log)
    ring = Ring(root, index, keeper, args.segment, args.retain, args.max_bytes,
                Encoding(preset=args.preset, crf=args.crf), counters, log)
    ring.recover()
    with zmq.Context() as ctx:
        frames = make_socket(ctx, zmq.SUB, connect=args.subscribe, rcvhwm=SUB_HWM, linger=0)
        frames.setsockopt(zmq.SUBSCRIBE, b"")
        events = None
        if args.events:
            events = make_socket(ctx, zmq.SUB, connect=args.events, linger=0)
            events.setsockopt(zmq.SUBSCRIBE, b"")
        log.info("recorder started", subscribe=args.subscribe, dir=str(root), events=args.events,
                 segment_s=args.segment, retain_s=args.retain, max_bytes=args.max_bytes)
        try:
            until = set(name_list(args.exit_when_ended)) or None
            run(ring, frames, events, stop, counters, log, until)
        finally:
            ring.close_all()
            frames.close()
            if events is not None:
                events.close()
            index.close()
    stats = {**counters.snapshot(), "cameras": sorted(ring.cameras)}
    write_stats(args.stats, stats)
    log.info("recorder stopped", stats=stats)
    return 0


def run(ring: Ring, frames: zmq.Socket, events: zmq.Socket | None, stop: StopFlag, counters: Counters, log,
        until_ended: set[str] | None = None) -> None:
    poller = zmq.Poller()
    poller.register(frames, zmq.POLLIN)
    if events is not None:
        poller.register(events, zmq.POLLIN)
    next_retention = time.monotonic()
    while not stop.is_set():
        if until_ended and until_ended <= ring.ended:
            log.info("all cameras ended", cameras=sorted(until_ended))
            return
        ready = dict(poller.poll(250))
        if frames in ready:
            for _ in range(500):  # bounded, so events and retention get their turn
                try:
                    parts = frames.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                _handle(ring, [p.buffer for p in parts], counters, log)
        if events is not None and events in ready:
            while True:
                try:
                    part = events.recv(flags=zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    msg = wire.unpack(part)
                    if msg["kind"] != "event":
                        raise wire.MalformedMessage("unexpected_kind", msg["kind"])
                    ring.on_event(msg)
                except wire.MalformedMessage as exc:
                    counters.add("malformed", exc.reason)
        if time.monotonic() >= next_retention:
            next_retention = time.monotonic() + RETENTION_EVERY_S
            ring.close_idle(max(2 * ring.segment_s, 10.0))
            ring.enforce_retention()


def _handle(ring: Ring, parts: list, counters: Counters, log) -> None:
    try:
        msg = wire.unpack(parts[0])
        if msg["kind"] == "frame":
            ring.on_frame(parts)
        elif msg["kind"] in ("status", "eos"):
            ring.on_control(msg)
        else:
            raise wire.MalformedMessage("unexpected_kind", msg["kind"])
    except wire.MalformedMessage as exc:
        counters.add("malformed", exc.reason)
        log.warning("malformed message dropped", reason=exc.reason, detail=str(exc))
