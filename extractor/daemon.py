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

Exit codes (common.daemon's, which camwire run acts on): EXIT_OK when stopped by SIGTERM/SIGINT,
or (without ``--config``) when every file camera was read to its end; EXIT_SOURCE_FAILED, the
extractor's own, when without ``--config`` a file camera's sources can never work (no such file,
not a video, ...: it sent ``Status(failed)`` and ``Eos``, and there is nothing to retry) or a
file camera ended early, at a stretch it cannot read past (``ended_early``, and its ``Eos`` says
so in ``reason``); EXIT_FAILED and EXIT_OPTIONS as for every daemon.
With ``--config`` (a service) nothing makes it exit on its own: a failed camera is retried every
``--failed-retry``, a file read to its end stays ended (one with ``loop = true`` is played again
from its start, counted under ``loops``), and SIGHUP (or a changed file) reloads the
camera list.

The ``--stats`` file is per camera (``{camera: {decoded, sent, ..., thread_restarts}}``); the
metrics are the same counters labelled by camera.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import zmq

from camwire.common.config import Config
from camwire.common.curve import SERVER_OF
from camwire.common.daemon import EXIT_OK, EXIT_SOURCE_FAILED, Daemon
from camwire.common.env import expand
from camwire.common.paths import name_list
from camwire.common.sockets import OperatorError, check_addresses, is_local
from camwire.common.settings import ExtractorSettings
from camwire.extractor.camera import PASSTHROUGH, RELAY_HWM, CameraCounters, CameraLoop, CameraSpec
from camwire.extractor.motion import MotionSettings
from camwire.extractor.poll import POLL_LABELS
from camwire.extractor.sampling import Sampling
from camwire.extractor.subscribers import Subscribers

RELAY_ADDR = "inproc://publish-relay"
PUB_HWM = 50  # frames per subscriber; a slow recorder loses frames (it sees the seq gap), we never wait
STOP_JOIN_S = 5.0
# per camera: the label names under each counter (the camera first), for the metrics
CAMERA_LABELS = {key: ("camera",) for key in ("decoded", "sent", "published", "reconnects")} | {
    "dropped": ("camera", "reason"), "skipped": ("camera", "reason"), "source_errors": ("camera", "error"),
    "ended_early": ("camera", "error"), "shm": ("camera", "what"), "loops": ("camera",), **POLL_LABELS}
THREAD_PREFIX = "camera-"
def motion_from_args(args: ExtractorSettings) -> MotionSettings:
    return MotionSettings(threshold=args.motion_threshold, min_area=args.motion_min_area,
                          off_delay=args.motion_off_delay, heartbeat=args.motion_heartbeat)


def sampling_from_args(args: ExtractorSettings) -> Sampling:
    return Sampling(every=args.every, fps=args.fps, keyframes=args.keyframes)


def specs_from_config(cfg: Config, args: ExtractorSettings) -> list[CameraSpec]:
    """The cameras this extractor serves: all in the file, or the ``--cameras`` named."""
    chosen = name_list(args.cameras) or list(cfg.cameras)
    twice = sorted({name for name in chosen if chosen.count(name) > 1})
    if twice:  # one thread per camera: a second would send the same seqs over the first's
        raise cfg.error("cameras", f"--cameras names {', '.join(twice)} twice")
    missing = [name for name in chosen if name not in cfg.cameras]
    if missing:
        raise cfg.error("cameras", f"--cameras names {', '.join(missing)}, not in the file")
    specs = [CameraSpec(name=c.name, sources=c.sources, sampling=c.sampling, realtime=c.realtime or args.realtime,
                       loop=c.loop, enc=args.enc, open_timeout=args.open_timeout, read_timeout=args.read_timeout,
                       stall=args.stall, recorded=c.record, detect=c.detect or args.detect, masks=c.masks,
                       motion=motion_from_args(args), poll=c.poll, placeholder=c.placeholder,
                       stale_after=c.stale_after, detect_size=c.detect_size or args.detect_size,
                       pixel_format=c.pixel_format or args.pixel_format, shm_slots=shm_slots(args),
                       source_slots=args.source_slots) for c in (cfg.cameras[name] for name in chosen)]
    check_formats(specs, args, cfg)
    return specs


def check_formats(specs: list[CameraSpec], args: ExtractorSettings, cfg: Config | None = None) -> None:
    """What pixel formats and rings cannot do, refused in one line (at start, and at a reload from
    the file): a JPEG cannot carry YUV 4:2:0 planes; a ring has at most shm.MAX_SLOTS slots."""
    from camwire.common.shm import MAX_SLOTS

    if args.source_slots > MAX_SLOTS:
        line = f"--source-slots: at most {MAX_SLOTS}, not {args.source_slots}"
        raise OperatorError(line) if cfg is None else cfg.error("extractor.source_slots", line)
    if args.enc == "jpeg" and (yuv := [s.name for s in specs if s.pixel_format == "yuv420"]):
        line = f"--enc jpeg cannot carry yuv420 frames ({', '.join(yuv)}): use raw or lz4, or another pixel_format"
        if cfg is not None:
            raise cfg.error(f"cameras.{yuv[0]}.pixel_format", line)
        raise OperatorError(line)


def shm_slots(args: ExtractorSettings) -> int:
    """The ring each camera's frames go through (0: none): ``--shm on``, or ``auto`` when ``--push``
    stays on this host (ipc://, or TCP to a loopback address), and frames go raw."""
    if args.enc != "raw" or args.shm == "off":
        return 0
    return args.shm_slots if args.shm == "on" or is_local(args.push or "") else 0


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


def main(args: ExtractorSettings) -> int:
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
                            masks=tuple(args.mask or ()), motion=motion_from_args(args), poll=args.poll,
                            detect_size=args.detect_size, pixel_format=args.pixel_format,
                            shm_slots=shm_slots(args), source_slots=args.source_slots)]
        check_formats(specs, args)
    else:
        raise OperatorError("give --camera and --source, or --config")
    d = Daemon("extractor", args, labels=CAMERA_LABELS)
    if any(spec.shm_slots for spec in specs):  # rings a killed extractor left in /dev/shm go now
        from camwire.common import shm

        if reclaimed := shm.reclaim():
            d.log.info("shared memory of dead extractors reclaimed", rings=reclaimed[:10], count=len(reclaimed))
    d.stats_shape(per_camera)  # the --stats file per camera, as the supervisor and tools read it
    ex = Extractor(d, args, services=config is not None)
    if ex.pub is not None:
        d.on(ex.relay, ex.on_relay)
        d.on(ex.pub, ex.subscribers.on_message)  # a camera's frames go out while someone wants them
        if args.publish_wait > 0:
            ex.wait_for_recorder(specs, args.publish_wait)
        if args.publish_enc != PASSTHROUGH and any(s.sampling.keyframes for s in specs):
            d.log.warning("with --keyframes, --publish carries key frames only; "
                          "--publish-enc passthrough records every frame without decoding")
    d.gauges(ex.gauges)
    d.on_reload(ex.reload)
    d.log.info("extractor started", cameras=[s.name for s in specs], push=args.push, publish=args.publish,
               sampling={s.name: s.sampling.describe() for s in specs})
    ex.cameras.apply(specs, reloaded=False)
    code = d.run(until=None if config is not None else ex.cameras.all_finished, cleanup=ex.close)
    d.log.info("extractor stopped", stats=d.stats(),
               process={k: v for k, v in d.counters.snapshot().items() if k not in CAMERA_LABELS})
    if code == EXIT_OK and ex.cameras.any_failed():  # or a file ended early: not all of it was read
        return EXIT_SOURCE_FAILED
    return code


class Extractor:
    """The extractor's state: the publish socket and the relay the camera threads hand their
    frames to it over, who subscribes to what (extractor.subscribers), and the camera threads."""

    def __init__(self, d: Daemon, args: ExtractorSettings, services: bool) -> None:
        self.d, self.args = d, args
        self.subscribers = Subscribers()
        self.pub: zmq.Socket | None = None
        self.relay: zmq.Socket | None = None
        if args.publish:
            self.pub = d.socket(zmq.XPUB, bind=args.publish, sndhwm=PUB_HWM, linger=1000)
            self.relay = d.socket(zmq.PULL, bind=RELAY_ADDR, rcvhwm=RELAY_HWM, linger=0)
        self.cameras = Cameras(d, RELAY_ADDR if self.relay is not None else None, services=services,
                               flush=self.flush, subscribers=self.subscribers)

    def on_relay(self, parts: list[zmq.Frame]) -> None:
        """A camera thread's frame (or packet) out on ``--publish``: PUB never blocks, it drops at HWM."""
        self.pub.send_multipart(parts, copy=False)

    def wait_for_recorder(self, specs: list[CameraSpec], within_s: float) -> None:
        """Before the cameras start, up to ``within_s`` for a recorder to mark every recorded camera
        as its own (a web console watching a camera subscribes to its frames, never to the marker,
        so it does not end the wait): the camera threads then start knowing who is there."""
        recorded = [s.name for s in specs if s.recorded]
        subscribed = self.d.serve_until(lambda: all(map(self.subscribers.recorded, recorded)), within_s)
        self.d.log.info("recorder present" if subscribed else "no recorder yet; going on", publish=self.args.publish)

    def flush(self) -> None:
        """Forward everything the camera threads have handed over (a stopped one's last frames)."""
        while self.relay is not None and self.relay.poll(0):
            self.pub.send_multipart(self.relay.recv_multipart(copy=False), copy=False)

    def reload(self, cfg: Config | None) -> None:
        if cfg is None:
            self.d.log.info("nothing to reload: the camera comes from --camera/--source")
            return
        # a ConfigError (--cameras names one the new file lacks) is the skeleton's to log: the cameras stay
        self.cameras.apply(specs_from_config(cfg, self.args))

    def gauges(self) -> dict:
        return {"decode_fps": ("frames decoded a second, over the last few seconds", ("camera",),
                               self.cameras.decode_fps())}

    def close(self) -> None:
        self.cameras.stop_all()
        self.flush()  # what the cameras handed over last (a file's final frames, its eos)


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
                          subscribed=lambda: self.subscribers.wants(name),
                          online_at=before.online_at if before is not None else None)
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


def check(args: ExtractorSettings) -> None:
    """What camwire.cli and check-config judge before the daemon starts (ValueError: one line)."""
    sampling_from_args(args)
    motion_from_args(args)
    if args.stall <= 0:
        raise ValueError("--stall: a duration above zero")
    check_addresses(args, "push", "publish")  # refused once here, not by every camera thread start
