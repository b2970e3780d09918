"""``camwire extractor``: the process around the camera threads.

The main thread owns the publish socket (``--publish``, an XPUB so it can tell when a subscriber
is there): camera threads hand it every decoded frame, or every compressed packet with
``--publish-enc passthrough``, over an inproc PUSH, and it forwards them without blocking. Each
camera thread owns its own PUSH socket to the ventilator, so one slow or dead camera never holds
up another.
"""

from __future__ import annotations

import argparse
import threading
from functools import partial
from typing import Callable

import zmq

from common import wire
from common.config import Config, ConfigWatcher
from common.counters import merge, write_stats
from common.lifecycle import StopFlag
from common.logs import configure
from common.metrics import register_stats
from common.paths import name_list
from common.sockets import make_socket
from extractor.camera import PASSTHROUGH, RELAY_HWM, CameraLoop, CameraSpec
from extractor.sampling import Sampling

RELAY_ADDR = "inproc://publish-relay"
PUB_HWM = 50  # frames per subscriber; a slow recorder loses frames (it sees the seq gap), we never wait
RELOAD_POLL_S = 1.0  # how often --config's file is checked for changes
# the levels under each counter of a camera, for Prometheus labels (the camera comes first)
METRIC_LABELS = {key: ("camera",) for key in ("decoded", "sent", "published", "reconnects")} | {
    "dropped": ("camera", "reason"), "errors": ("camera", "error")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--camera", help="camera name, used in every message and event (without --config)")
    p.add_argument("--source", action="append", metavar="URL",
                   help="file, rtsp://, http(s)://, HLS .m3u8; repeat for fallbacks in order of preference")
    p.add_argument("--cameras", metavar="NAMES", help="with --config: serve only these cameras (default: all)")
    p.add_argument("--push", required=True, metavar="ADDR", help="ventilator frontend, e.g. tcp://host:5555")
    add_sampling_arguments(p)
    p.add_argument("--publish", metavar="ADDR", help="bind a PUB socket of every decoded frame (for the recorder)")
    p.add_argument("--publish-enc", default="lz4", choices=(*wire.ENCODINGS, PASSTHROUGH),
                   help="encoding on --publish; passthrough sends the source's H.264/HEVC packets undecoded")
    p.add_argument("--publish-wait", type=float, default=0.0, metavar="S",
                   help="before reading, wait up to S seconds for a subscriber (a file recorded from its first frame)")
    p.add_argument("--enc", default="raw", choices=wire.ENCODINGS, help="encoding towards the ventilator")
    p.add_argument("--open-timeout", type=float, default=10.0, metavar="S")
    p.add_argument("--read-timeout", type=float, default=10.0, metavar="S")
    p.add_argument("--stats", metavar="PATH", help="write counters as JSON here at exit")


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--every", type=int, default=1, metavar="N", help="send every N-th frame")
    group.add_argument("--fps", type=float, metavar="F", help="send about F frames a second")
    group.add_argument("--keyframes", action="store_true", help="decode and send key frames only")
    p.add_argument("--realtime", action="store_true", help="pace a file at its native rate, as a camera would be")


def sampling_from_args(args: argparse.Namespace) -> Sampling:
    return Sampling(every=args.every, fps=args.fps, keyframes=args.keyframes)


def specs_from_config(cfg: Config, args: argparse.Namespace) -> list[CameraSpec]:
    """The cameras this extractor serves: all in the file, or the ``--cameras`` named."""
    chosen = name_list(args.cameras) or list(cfg.cameras)
    missing = [name for name in chosen if name not in cfg.cameras]
    if missing:
        raise cfg.error("cameras", f"--cameras names {', '.join(missing)}, not in the file")
    return [CameraSpec(name=c.name, sources=c.sources, sampling=c.sampling, realtime=c.realtime or args.realtime,
                       enc=args.enc, open_timeout=args.open_timeout, read_timeout=args.read_timeout,
                       publish=c.record) for c in (cfg.cameras[name] for name in chosen)]


def main(args: argparse.Namespace) -> int:
    log = configure("extractor")
    reload: Callable[[], list[CameraSpec] | None] | None = None
    if args.config is not None:
        if args.camera or args.source:
            raise ValueError("--camera/--source and --config: the cameras come from one or the other")
        specs = specs_from_config(args.config, args)
        watcher = ConfigWatcher(args.config, log, every_s=RELOAD_POLL_S)
        reload = partial(watcher.changed, lambda cfg: specs_from_config(cfg, args))
    elif args.camera and args.source:
        specs = [CameraSpec(name=args.camera, sources=tuple(args.source), sampling=sampling_from_args(args),
                            realtime=args.realtime, enc=args.enc, open_timeout=args.open_timeout,
                            read_timeout=args.read_timeout)]
    else:
        raise ValueError("give --camera and --source, or --config")
    stop = StopFlag().install()
    with zmq.Context() as ctx:
        stats = run_cameras(ctx, specs, args.push, args.publish, args.publish_enc, stop, log,
                            publish_wait=args.publish_wait, reload=reload)
    write_stats(args.stats, stats)
    return 0


class Cameras:
    """The running camera threads, started, stopped and restarted as the config says."""

    def __init__(self, ctx: zmq.Context, push: str, relay: str | None, publish_enc: str, log) -> None:
        self.ctx, self.push, self.relay, self.publish_enc, self.log = ctx, push, relay, publish_enc, log
        self.loops: dict[str, CameraLoop] = {}
        self.retired: dict[str, dict] = {}  # counters of threads stopped by a reload, per camera
        self._lock = threading.Lock()  # a metrics scrape reads ``loops`` from its own thread

    def start(self, spec: CameraSpec, seq_start: int = 0) -> None:
        loop = CameraLoop(self.ctx, spec, self.push, self.relay if spec.publish else None, self.publish_enc,
                          StopFlag(), seq_start=seq_start)
        with self._lock:
            self.loops[spec.name] = loop
        loop.start()

    def stop(self, name: str, reason: str) -> CameraLoop:
        with self._lock:
            loop = self.loops.pop(name)
        loop.stop_reason = reason
        loop.stop.set()
        loop.join(timeout=10.0)
        merge(self.retired.setdefault(name, {}), loop.counters.snapshot())
        return loop

    def apply(self, specs: list[CameraSpec], reloaded: bool = True) -> None:
        """Start new cameras, stop removed ones, restart changed ones; the rest run on untouched."""
        wanted = {s.name: s for s in specs}
        removed = [n for n in self.loops if n not in wanted]
        changed = [n for n, s in wanted.items() if n in self.loops and self.loops[n].spec != s]
        added = [n for n in wanted if n not in self.loops]
        for name in removed:
            self.stop(name, "removed from the config")
        for name in changed:
            old = self.stop(name, "restarting with a changed config")
            self.start(wanted[name], seq_start=old.next_seq)  # seq runs on: the recorder sees no step back
        for name in added:
            self.start(wanted[name])
        if reloaded:
            self.log.info("config applied", added=added, removed=removed, changed=changed,
                          untouched=sorted(set(wanted) - set(added) - set(changed)))

    def any_alive(self) -> bool:
        with self._lock:
            return any(loop.is_alive() for loop in self.loops.values())

    def stop_all(self) -> None:
        with self._lock:
            loops = list(self.loops.values())
        for loop in loops:
            loop.stop.set()
        for loop in loops:
            loop.join(timeout=5.0)

    def stats(self) -> dict:
        with self._lock:
            live = {name: loop.counters.snapshot() for name, loop in self.loops.items()}
        return {name: merge(merge({}, self.retired.get(name, {})), live.get(name, {}))
                for name in {*self.retired, *live}}

    def decode_fps(self) -> dict[tuple, float]:
        with self._lock:
            return {(name,): loop.fps_in for name, loop in self.loops.items()}


def run_cameras(ctx: zmq.Context, specs: list[CameraSpec], push: str, publish: str | None,
                publish_enc: str, stop: StopFlag, log, publish_wait: float = 0.0,
                reload: Callable[[], list[CameraSpec] | None] | None = None) -> dict:
    """Run camera threads until a stop is asked or, without ``reload``, until all end (files);
    ``reload`` is asked each turn for a new camera list (None: no change). Returns the cameras' counters."""
    pub = relay = None
    if publish:
        pub = make_socket(ctx, zmq.XPUB, bind=publish, sndhwm=PUB_HWM, linger=1000)
        relay = make_socket(ctx, zmq.PULL, bind=RELAY_ADDR, rcvhwm=RELAY_HWM, linger=0)
        if publish_wait > 0:
            subscribed = pub.poll(int(publish_wait * 1000))
            log.info("subscriber present" if subscribed else "no subscriber yet; going on", publish=publish)
    if publish and publish_enc != PASSTHROUGH and any(s.sampling.keyframes for s in specs):
        log.warning("with --keyframes, --publish carries key frames only; "
                    "--publish-enc passthrough records every frame without decoding")
    cameras = Cameras(ctx, push, RELAY_ADDR if publish else None, publish_enc, log)
    register_stats("extractor", lambda: by_counter(cameras.stats()), METRIC_LABELS, lambda: {
        "decode_fps": ("frames decoded a second, over the last few seconds", ("camera",), cameras.decode_fps())})
    log.info("extractor started", cameras=[s.name for s in specs], push=push, publish=publish,
             sampling={s.name: s.sampling.describe() for s in specs})
    cameras.apply(specs, reloaded=False)
    poller = zmq.Poller()
    if relay is not None:
        poller.register(relay, zmq.POLLIN)
        poller.register(pub, zmq.POLLIN)
    try:
        while (reload is not None or cameras.any_alive()) and not stop.is_set():
            if relay is None:
                stop.wait(0.2)
            else:
                for sock, _ in poller.poll(200):
                    if sock is relay:
                        _forward(relay, pub)
                    else:
                        pub.recv_multipart()  # a (un)subscription: nothing to do with it
            if reload is not None and (new_specs := reload()) is not None:
                cameras.apply(new_specs)
    finally:
        stop.set()
        cameras.stop_all()
        if relay is not None:
            _forward(relay, pub)  # what the cameras handed over last (a file's final frames, its eos)
            relay.close()
            pub.close()
    stats = cameras.stats()
    log.info("extractor stopped", stats=stats)
    return stats


def by_counter(stats: dict[str, dict]) -> dict[str, dict]:
    """``{camera: {counter: ...}}`` -> ``{counter: {camera: ...}}``, the shape metrics read."""
    out: dict[str, dict] = {}
    for camera, counters in stats.items():
        for key, value in counters.items():
            out.setdefault(key, {})[camera] = value
    return out


def _forward(relay: zmq.Socket, pub: zmq.Socket) -> None:
    """Move every frame waiting on the relay to the PUB socket (PUB never blocks; it drops at HWM)."""
    while True:
        try:
            parts = relay.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        pub.send_multipart(parts, copy=False)
