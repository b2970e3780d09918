"""``camwire extractor``: the process around the camera threads, on the common.daemon skeleton.

The main thread owns the publish socket (``--publish``, an XPUB so it can tell when a subscriber
is there): camera threads hand it every decoded frame, or every compressed packet with
``--publish-enc passthrough``, over an inproc PUSH, and a handler forwards them without blocking.
The XPUB's (un)subscription messages say who listens (extractor.subscribers): a camera's video is
converted and published only while someone subscribes to it (the recorder, or the web console
while someone watches that camera), so publishing for live views costs nothing unwatched;
``--publish-wait`` waits for the recorder's own marker subscriptions, never for a viewer.
Each camera thread owns its own PUSH socket to the ventilator, so one slow or dead camera never
holds up another. Every camera thread is watched: one that crashes is started again (capped
backoff, counted under ``thread_restarts``) with its seq running on.

Exit codes (the supervisor's contract):
  0  stopped by SIGTERM/SIGINT, or (without ``--config``) every file camera read to its end;
  1  a crash outside a camera thread (or a failure the skeleton cannot go on from);
  2  bad options or addresses (camwire.cli);
  3  EXIT_SOURCE_FAILED: without ``--config``, a file camera's sources can never work (no such
     file, not a video, ...): it sent ``Status(failed)`` and ``Eos``, and there is nothing to retry;
     or a file camera ended early, at a stretch it cannot read past (``ended_early``, and its
     ``Eos`` says so in ``reason``).
With ``--config`` (a service) nothing makes it exit on its own: a failed camera is retried every
``--failed-retry``, a file read to its end stays ended, and SIGHUP (or a changed file) reloads the
camera list.

The ``--stats`` file is per camera (``{camera: {decoded, sent, ..., thread_restarts}}``); the
metrics are the same counters labelled by camera.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any, Callable

import zmq

from camwire.common import wire
from camwire.common.config import Config
from camwire.common.curve import SERVER_OF
from camwire.common.daemon import EXIT_SOURCE_FAILED, Daemon
from camwire.common.geometry import Polygon, parse_polygon
from camwire.common.env import expand
from camwire.common.paths import name_list
from camwire.common.sockets import OperatorError, check_addresses
from camwire.common.units import duration, percent
from camwire.extractor.camera import FAILED_RETRY_S, PASSTHROUGH, RELAY_HWM, CameraCounters, CameraLoop, CameraSpec
from camwire.extractor.motion import DETECT, MotionSettings
from camwire.extractor.poll import POLL_LABELS
from camwire.extractor.sampling import Sampling
from camwire.extractor.source import STALL_S
from camwire.extractor.subscribers import Subscribers

RELAY_ADDR = "inproc://publish-relay"
PUB_HWM = 50  # frames per subscriber; a slow recorder loses frames (it sees the seq gap), we never wait
STOP_JOIN_S = 5.0
# per camera: the label names under each counter (the camera first), for the metrics
CAMERA_LABELS = {key: ("camera",) for key in ("decoded", "sent", "published", "reconnects")} | {
    "dropped": ("camera", "reason"), "skipped": ("camera", "reason"), "source_errors": ("camera", "error"),
    "ended_early": ("camera", "error"), **POLL_LABELS}
THREAD_PREFIX = "camera-"
MOTION_DEFAULTS = MotionSettings()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--camera", action=Once,
                   help="camera name, used in every message and event (without --config); one per extractor")
    p.add_argument("--source", action="append", metavar="URL",
                   help="file, rtsp://, http(s)://, HLS .m3u8; repeat for fallbacks in order of preference; "
                        "${VAR} is filled in from the environment, so a password need not show in ps")
    p.add_argument("--cameras", metavar="NAMES", help="with --config: serve only these cameras (default: all)")
    p.add_argument("--push", required=True, metavar="ADDR", help="ventilator frontend, e.g. tcp://host:5555")
    add_sampling_arguments(p)
    add_motion_arguments(p)
    p.add_argument("--publish", metavar="ADDR", help="publish the camera's video here for the recorder (tcp://*:5559)")
    p.add_argument("--publish-enc", default="lz4", choices=(*wire.ENCODINGS, PASSTHROUGH),
                   help="encoding on --publish; passthrough sends the source's H.264/HEVC packets undecoded")
    p.add_argument("--publish-wait", type=duration, default=0.0, metavar="DURATION",
                   help="before reading, wait up to this long for a subscriber (a file recorded from its first frame)")
    p.add_argument("--enc", default="raw", choices=wire.ENCODINGS, help="encoding towards the ventilator")
    p.add_argument("--open-timeout", type=duration, default=10.0, metavar="DURATION",
                   help="give up opening a source after this long (then retried)")
    p.add_argument("--read-timeout", type=duration, default=10.0, metavar="DURATION",
                   help="a source that sends nothing this long is offline (then retried)")
    p.add_argument("--stall", type=duration, default=STALL_S, metavar="DURATION",
                   help="a live stream with no video this long is offline, and reconnected (default 5s)")
    p.add_argument("--failed-retry", type=duration, default=FAILED_RETRY_S, metavar="DURATION",
                   help="how often a source that cannot work (no such file, 404, not a video) is tried again "
                        "(default 5m)")
    p.add_argument("--poll", type=duration, metavar="DURATION",
                   help="with --camera/--source: the source is a polled feed (a JPEG, MP4/TS clip or HLS playlist "
                        "at an http(s) URL), fetched this often (extractor.poll)")
    p.add_argument("--stats", metavar="PATH", help="write counters as JSON here at exit")


class Once(argparse.Action):
    """A flag meant to be given once: every value is kept (``_<dest>_given``) so that
    :func:`check` refuses a second ``--camera`` in one line, rather than taking the last."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        given = f"_{self.dest}_given"
        setattr(namespace, given, [*(getattr(namespace, given, None) or []), values])
        setattr(namespace, self.dest, values)


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--every", type=int, default=1, metavar="N", help="send every N-th frame")
    group.add_argument("--fps", type=float, metavar="F", help="send about F frames a second")
    group.add_argument("--keyframes", action="store_true", help="decode and send key frames only")
    p.add_argument("--realtime", action="store_true", help="pace a file at its native rate, as a camera would be")


def add_motion_arguments(p: argparse.ArgumentParser) -> None:
    """Motion is found in every decoded frame (extractor.motion); these tune it and its gate."""
    p.add_argument("--detect", choices=DETECT, default="motion",
                   help="motion: send sampled frames to the classifiers only while there is motion (and a "
                        "heartbeat); always: every sampled frame. A camera's detect in --config overrides it")
    p.add_argument("--motion-threshold", type=float, default=MOTION_DEFAULTS.threshold, metavar="LEVELS",
                   help="grey levels (of 255) a pixel must change by, beyond the whole frame's change")
    p.add_argument("--motion-min-area", type=percent, default=MOTION_DEFAULTS.min_area, metavar="PCT",
                   help="smallest moving blob that counts, as a share of the frame (0.3%%)")
    p.add_argument("--motion-off-delay", type=duration, default=MOTION_DEFAULTS.off_delay, metavar="DURATION",
                   help="motion ends after this long without any (default 5s)")
    p.add_argument("--motion-heartbeat", type=duration, default=MOTION_DEFAULTS.heartbeat, metavar="DURATION",
                   help="with --detect motion, a frame to the classifiers at least this often even with no "
                        "motion, so a still object is still seen (default 10s)")
    p.add_argument("--mask", type=mask_polygon, action="append", metavar="POINTS",
                   help="without --config: a polygon motion ignores, as JSON: '[[0,0],[0.5,0],[0.5,0.2]]' "
                        "(pixels, or fractions of the frame, as in the file's masks); repeat for more")


def mask_polygon(text: str) -> Polygon:
    """``--mask``: a polygon as JSON, read as camwire.toml's ``masks`` are."""
    try:
        return parse_polygon(json.loads(text), "--mask")
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"a JSON list of [x, y] points, not {text!r} ({exc.msg})") from None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--mask: ")) from None


def motion_from_args(args: argparse.Namespace) -> MotionSettings:
    return MotionSettings(threshold=args.motion_threshold, min_area=args.motion_min_area,
                          off_delay=args.motion_off_delay, heartbeat=args.motion_heartbeat)


def sampling_from_args(args: argparse.Namespace) -> Sampling:
    return Sampling(every=args.every, fps=args.fps, keyframes=args.keyframes)


def specs_from_config(cfg: Config, args: argparse.Namespace) -> list[CameraSpec]:
    """The cameras this extractor serves: all in the file, or the ``--cameras`` named."""
    chosen = name_list(args.cameras) or list(cfg.cameras)
    twice = sorted({name for name in chosen if chosen.count(name) > 1})
    if twice:  # one thread per camera: a second would send the same seqs over the first's
        raise cfg.error("cameras", f"--cameras names {', '.join(twice)} twice")
    missing = [name for name in chosen if name not in cfg.cameras]
    if missing:
        raise cfg.error("cameras", f"--cameras names {', '.join(missing)}, not in the file")
    return [CameraSpec(name=c.name, sources=c.sources, sampling=c.sampling, realtime=c.realtime or args.realtime,
                       enc=args.enc, open_timeout=args.open_timeout, read_timeout=args.read_timeout,
                       stall=args.stall, recorded=c.record, detect=c.detect or args.detect, masks=c.masks,
                       motion=motion_from_args(args), poll=c.poll, placeholder=c.placeholder,
                       stale_after=c.stale_after) for c in (cfg.cameras[name] for name in chosen)]


class Extractor(Daemon):
    """The skeleton, with the ``--stats`` file kept per camera as the supervisor and tools read it."""

    def stats(self) -> dict[str, Any]:
        return per_camera(self.counters.snapshot())


def per_camera(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{counter: {camera: ...}}`` -> ``{camera: {counter: ...}}``; a camera thread's restarts
    (``thread_restarts/camera-<name>``) go under its camera. Counters of the process as a whole
    (reloads, malformed, handler errors) are in the metrics and the exit log line."""
    out: dict[str, dict[str, Any]] = {}
    for key, tree in snapshot.items():
        if key in CAMERA_LABELS:
            for camera, value in tree.items():
                out.setdefault(camera, {})[key] = value
        elif key == "thread_restarts":
            for thread, n in tree.items():
                if thread.startswith(THREAD_PREFIX):
                    out.setdefault(thread[len(THREAD_PREFIX):], {})[key] = n
    return out


def by_counter(stats: dict[str, dict]) -> dict[str, dict]:
    """``{camera: {counter: ...}}`` -> ``{counter: {camera: ...}}``, the shape metrics read."""
    out: dict[str, dict] = {}
    for camera, counters in stats.items():
        for key, value in counters.items():
            out.setdefault(key, {})[camera] = value
    return out


def main(args: argparse.Namespace) -> int:
    config: Config | None = args.config
    if config is not None:
        if args.camera or args.source or args.poll is not None:
            raise OperatorError("--camera/--source and --config: the cameras come from one or the other"
                                if args.camera or args.source else "--poll is for --camera/--source; "
                                "in --config a camera says poll = \"30s\"")
        specs = specs_from_config(config, args)
    elif args.camera and args.source:
        try:
            sources = tuple(expand(u, "--source") for u in args.source)
        except ValueError as exc:
            raise OperatorError(str(exc)) from None
        if args.poll is not None and (args.poll <= 0 or len(sources) != 1
                                      or not sources[0].startswith(("http://", "https://"))):
            raise OperatorError("--poll: a duration above zero, and one --source with an http(s) URL")
        specs = [CameraSpec(name=args.camera, sources=sources, sampling=sampling_from_args(args),
                            realtime=args.realtime, enc=args.enc, open_timeout=args.open_timeout,
                            read_timeout=args.read_timeout, stall=args.stall, detect=args.detect,
                            masks=tuple(args.mask or ()),
                            motion=motion_from_args(args), poll=args.poll)]
    else:
        raise OperatorError("give --camera and --source, or --config")
    d = Extractor("extractor", args, labels=CAMERA_LABELS)
    relay = None
    subscribers = Subscribers()
    if args.publish:
        pub = d.socket(zmq.XPUB, bind=args.publish, sndhwm=PUB_HWM, linger=1000)
        relay = d.socket(zmq.PULL, bind=RELAY_ADDR, rcvhwm=RELAY_HWM, linger=0)
        d.on(relay, lambda parts: pub.send_multipart(parts, copy=False))  # PUB never blocks: it drops at HWM
        d.on(pub, subscribers.on_message)  # a camera's frames go out while someone wants them
        if args.publish_wait > 0:
            # for a recorder to mark every recorded camera as its own (a web console watching a
            # camera subscribes to its frames, never to the marker, so it does not end the wait).
            # Taken here, so the camera threads start knowing who is there
            recorded = [s.name for s in specs if s.recorded]
            deadline = time.monotonic() + args.publish_wait
            while not all(map(subscribers.recorded, recorded)) and (left := deadline - time.monotonic()) > 0:
                if pub.poll(int(left * 1000) + 1):
                    subscribers.on_message(pub.recv_multipart(copy=False))
            subscribed = all(map(subscribers.recorded, recorded))
            d.log.info("recorder present" if subscribed else "no recorder yet; going on", publish=args.publish)
        if args.publish_enc != PASSTHROUGH and any(s.sampling.keyframes for s in specs):
            d.log.warning("with --keyframes, --publish carries key frames only; "
                          "--publish-enc passthrough records every frame without decoding")
    def flush() -> None:
        """Forward everything the camera threads have handed over (a stopped one's last frames)."""
        while relay is not None and relay.poll(0):
            pub.send_multipart(relay.recv_multipart(copy=False), copy=False)

    cameras = Cameras(d, RELAY_ADDR if relay is not None else None, services=config is not None, flush=flush,
                      subscribers=subscribers)
    d.gauges(lambda: {"decode_fps": ("frames decoded a second, over the last few seconds", ("camera",),
                                     cameras.decode_fps())})

    def reload(cfg: Config | None) -> None:
        if cfg is None:
            d.log.info("nothing to reload: the camera comes from --camera/--source")
            return
        # a ConfigError (--cameras names one the new file lacks) is the skeleton's to log: the cameras stay
        cameras.apply(specs_from_config(cfg, args))

    d.on_reload(reload)
    d.log.info("extractor started", cameras=[s.name for s in specs], push=args.push, publish=args.publish,
               sampling={s.name: s.sampling.describe() for s in specs})
    cameras.apply(specs, reloaded=False)

    def cleanup() -> None:
        cameras.stop_all()
        flush()  # what the cameras handed over last (a file's final frames, its eos)

    code = d.run(until=None if config is not None else cameras.all_finished, cleanup=cleanup)
    d.log.info("extractor stopped", stats=d.stats(),
               process={k: v for k, v in d.counters.snapshot().items() if k not in CAMERA_LABELS})
    if code == 0 and cameras.any_failed():  # or a file ended early: not all of it was read
        return EXIT_SOURCE_FAILED
    return code


class Cameras:
    """The running camera threads, each watched by the skeleton; started, stopped and restarted as
    the config says. A camera's seq runs on across its threads (restart or reload) in a process."""

    def __init__(self, d: Daemon, relay: str | None, services: bool, flush: Callable[[], None],
                 subscribers: Subscribers | None = None) -> None:
        self.d, self.relay, self.services, self.flush = d, relay, services, flush
        self.subscribers = subscribers or Subscribers()
        self.specs: dict[str, CameraSpec] = {}
        self.loops: dict[str, CameraLoop] = {}  # the newest thread of each camera
        self._lock = threading.Lock()  # a metrics scrape reads ``loops`` from its own thread

    def _thread(self, name: str) -> CameraLoop:
        """The factory the skeleton calls, at the start and after a crash."""
        before = self.loops.get(name)
        loop = CameraLoop(self.d.ctx, self.specs[name], self.d.args.push,
                          self.relay if self.specs[name].publish else None, self.d.args.publish_enc,
                          CameraCounters(self.d.counters, name), seq_start=before.next_seq if before else 0,
                          failed_retry=self.d.args.failed_retry, finish_failed=not self.services,
                          peer_watch=lambda sock, addr: self.d.peer_watch(sock, addr, SERVER_OF["push"]),
                          log=self.d.log.bind(camera=name),
                          resume=before.file_progress if before is not None and before.spec == self.specs[name] else None,
                          subscribed=lambda: self.subscribers.wants(name))
        with self._lock:
            self.loops[name] = loop
        return loop

    def start(self, spec: CameraSpec) -> None:
        self.specs[spec.name] = spec
        self.d.watch(f"{THREAD_PREFIX}{spec.name}", lambda: self._thread(spec.name))

    def stop(self, name: str, reason: str) -> None:
        self.d.unwatch(f"{THREAD_PREFIX}{name}")
        loop = self.loops[name]
        loop.stop_reason = reason
        loop.stop.set()
        loop.join(timeout=10.0)
        # its last frames go out before a successor's first: the recorder sees seq only go up
        self.flush()

    def apply(self, specs: list[CameraSpec], reloaded: bool = True) -> None:
        """Start new cameras, stop removed ones, restart changed ones; the rest run on untouched."""
        wanted = {s.name: s for s in specs}
        removed = [n for n in self.specs if n not in wanted]
        changed = [n for n, s in wanted.items() if n in self.specs and self.specs[n] != s]
        added = [n for n in wanted if n not in self.specs]
        for name in removed:
            self.stop(name, "removed from the config")
            del self.specs[name]
            with self._lock:
                self.loops.pop(name)
        for name in changed:
            self.stop(name, "restarting with a changed config")
            self.start(wanted[name])  # the old thread stays in ``loops`` until then: seq runs on
        for name in added:
            self.start(wanted[name])
        if reloaded:
            self.d.log.info("config applied", added=added, removed=removed, changed=changed,
                            untouched=sorted(set(wanted) - set(added) - set(changed)))

    def all_finished(self) -> bool:
        with self._lock:
            return all(loop.finished and not loop.is_alive() for loop in self.loops.values())

    def any_failed(self) -> bool:
        """A file camera failed for good, or ended early (a corrupt stretch): not all of it was read."""
        with self._lock:
            return any(loop.outcome in ("failed", "ended_early") for loop in self.loops.values())

    def stop_all(self) -> None:
        with self._lock:
            loops = list(self.loops.values())
        for loop in loops:
            loop.stop.set()
        for loop in loops:
            loop.join(timeout=STOP_JOIN_S)

    def decode_fps(self) -> dict[tuple, float]:
        with self._lock:
            return {(name,): loop.fps_in for name, loop in self.loops.items()}


def check(args: argparse.Namespace) -> None:
    """What camwire.cli and check-config judge before the daemon starts (ValueError: one line)."""
    cameras = getattr(args, "_camera_given", None) or []
    if len(cameras) > 1:  # one thread per camera name: last-wins would drop a camera without a word
        raise ValueError(f"--camera given {len(cameras)} times ({', '.join(cameras)}): one extractor serves "
                         "one camera from its flags; for several, use --config")
    sampling_from_args(args)
    if getattr(args, "motion_threshold", None) is not None:
        motion_from_args(args)
    if getattr(args, "stall", 1.0) <= 0:
        raise ValueError("--stall: a duration above zero")
    check_addresses(args, "push", "publish")  # refused once here, not by every camera thread start
