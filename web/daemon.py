"""``camwire web``: the web console, on the common.daemon skeleton.

It reads what the other daemons already produce and changes none of them:

- SUB, connected to every ``--subscribe`` address (the extractors' ``--publish``): ``frame``
  messages, but only of the cameras someone is watching now. The subscription is per camera
  (common.wire.camera_topic), so the extractor's PUB filters and an unwatched camera's video never
  crosses the wire; with no viewer the console subscribes to nothing and costs next to nothing.
- SUB, connected to the sink's ``--publish-detections`` (``--detections``): each frame's
  ``result`` (boxes only) of the watched cameras, drawn on their live images.
- PUSH, connected to the sink's ``--bind`` (``--sink``): what the console changes that the sink
  keeps, ``switch`` and ``reviewed`` (web.sink_link).
- The sink's ``--events`` file (followed, web.events_index) and ``--data-dir`` (status.db,
  snapshots); the recorder's ``--recordings`` folder (index.db, segments, kept clips).

The main thread owns both sockets and polls them with the skeleton's loop; the HTTP server
(aiohttp, web.api) runs in a second thread with its own event loop, watched (``fatal``: a
console whose server died exits 1). The two meet only in thread-safe objects: the live hub
(web.live: the newest frame per camera; the HTTP side asks for JPEGs) and the events index.

SIGHUP (or ``POST /api/reload``, which checks the file first and then signals every camwire
daemon on this host started with the same ``--config``) takes the new cameras, zones and token.
Every load of the file goes through one :class:`ConfigTruth` (the skeleton's watcher, a SIGHUP,
the reload's check): a file refused is what ``GET /api/config`` answers, with its
``FILE:LINE: reason`` and since when, until a good one loads; the page shows it on every view.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import zmq

from camwire.common import wire
from camwire.common.config import DAEMONS, Config, ConfigError, load_config
from camwire.common.curve import SERVER_OF
from camwire.common.daemon import Daemon
from camwire.common.env import expand
from camwire.common.logs import RepeatLimiter
from camwire.common.sockets import OperatorError, check_addresses
from camwire.common.settings import WebSettings
from camwire.common.settings.web import TOKEN_ENV
from camwire.common.settings.values import network
from camwire.common.sinks import Sinks
from camwire.web.auth import Auth, check_bind
from camwire.web.remote import Remote
from camwire.web.sink_link import FLUSH_S, SNDHWM, SinkLink

# aiohttp, OpenCV and the console's own modules are imported by main(): every daemon judging the
# whole file builds this parser, and none of them should load a web server to do it

SUB_HWM = 8  # frames per subscription: a console behind takes the newest, never a backlog
POLL_EVENTS_S = 0.5
SUBSCRIBE_EVERY_S = 0.2  # how soon a new viewer's camera starts to flow
PEER_CHECK_S = 5.0
LABELS = {"live": ("what",), "refused": ("reason",), "logins": ("outcome",), "api_reloads": ("outcome",),
          "cut_off": ("reason",), "switches": ("outcome",)}
def token_of(args: WebSettings) -> str | None:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    return expand(token, "--token") if token else None


def check(args: WebSettings) -> None:
    """What the console would refuse, judged before it starts (check-config, a reload)."""
    check_addresses(args, "subscribe", "detections", "sink")
    if not 0 < (args.port or 0) < 65536:
        raise ValueError(f"--port: 1 to 65535, not {args.port}")
    check_bind(args.bind, token_of(args))


def signal_daemons(config: Path) -> list[dict[str, Any]]:
    """SIGHUP every camwire daemon of this user on this host started with ``--config`` ``config``
    (``camwire run``'s children included; not run itself, which would pass it on twice)."""
    want = config.resolve()
    done = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue  # gone, or not ours to read
        command = _camwire_command(argv)
        given = _config_of(argv)
        if command not in DAEMONS or given is None:
            continue
        try:
            cwd = (entry / "cwd").resolve()
            if (cwd / given).resolve() != want:
                continue
            os.kill(int(entry.name), signal.SIGHUP)
        except OSError:
            continue
        done.append({"pid": int(entry.name), "daemon": command})
    return done


def _config_of(argv: list[str]) -> str | None:
    """The ``--config FILE`` (or ``--config=FILE``) a command line names, else None."""
    for i, word in enumerate(argv):
        if word == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--config="):
            return word[len("--config="):]
    return None


def _camwire_command(argv: list[str]) -> str | None:
    """``camwire sink ...``, ``python -m camwire sink ...``: the sub-command, else None."""
    for i, word in enumerate(argv[:-1]):
        script = Path(word).name == "camwire" and (i == 0 or i == 1 and Path(argv[0]).name.startswith("python"))
        module = word == "camwire" and i > 0 and argv[i - 1] == "-m"
        if script or module:
            return argv[i + 1]
    return None


class ConfigTruth:
    """Whether camwire.toml as it stands loads: every load of the console's goes through
    :meth:`load`, which remembers the outcome. A refused file (a typo saved) stays the answer,
    with its ``FILE:LINE: reason`` and when it was first refused, until a load succeeds (the file
    fixed, or put back as it was). The daemons refuse the same file with the same line and keep
    running on their last good one; this is what lets the console say so. Thread-safe: the main
    thread's watcher and the HTTP thread's reload both load."""

    def __init__(self, loader: Callable[[Path], Config] | None, path: Path | None) -> None:
        self._loader = loader or load_config
        self._lock = threading.Lock()
        self._path = path
        self._refused: ConfigError | None = None
        self._since: float | None = None  # wall time of the first refusal since the last good load

    def load(self, path: Path) -> Config:
        """The loader's answer for ``path``; a ConfigError is remembered, then raised on."""
        try:
            cfg = self._loader(path)
        except ConfigError as exc:
            with self._lock:
                self._path, self._refused = path, exc
                self._since = self._since if self._since is not None else time.time()
            raise
        with self._lock:
            self._path, self._refused, self._since = path, None, None
        return cfg

    def answer(self) -> dict[str, Any]:
        """``GET /api/config``: ``ok``, ``file``; when refused, ``error`` (``FILE:LINE: reason``,
        as the daemons log it), ``line`` and ``since`` (seconds since the epoch)."""
        with self._lock:
            exc, since, path = self._refused, self._since, self._path
        if exc is None:
            return {"ok": True, "file": str(path) if path else None, "error": None, "line": None, "since": None}
        return {"ok": False, "file": str(exc.path), "error": str(exc), "line": exc.line, "since": since}


class Http:
    """The aiohttp server on its own event loop: bound in the main thread (so a port in use is an
    operator's error at start), served in a watched thread, stopped from the main thread."""

    def __init__(self, app: Any, door: Any, host: str, port: int) -> None:
        from aiohttp import web

        from camwire.web.door import DoorSite

        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        self.loop.run_until_complete(self.runner.setup())
        site = DoorSite(self.runner, door, host, port)  # every connection through the door (web.door)
        try:
            self.loop.run_until_complete(site.start())
        except OSError as exc:
            self.loop.run_until_complete(self.runner.cleanup())
            raise OperatorError(f"--bind {host} --port {port}: cannot listen there: {exc.strerror}") from None
        self.port = self.runner.addresses[0][1]

    def thread(self) -> threading.Thread:
        return threading.Thread(target=self.loop.run_forever, name="http", daemon=True)

    def stop(self, thread: threading.Thread | None) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        if thread is not None:
            thread.join(5.0)
        if not self.loop.is_running():
            self.loop.run_until_complete(self.runner.cleanup())
            self.loop.close()


def main(args: WebSettings) -> int:
    token = token_of(args)
    check_bind(args.bind, token)
    cfg = args.config if isinstance(args.config, Config) else None
    truth = ConfigTruth(args.config_loader, cfg.path if cfg else None)
    args.config_loader = truth.load  # before the skeleton takes it: its watcher and SIGHUP load through it
    d = Daemon("web", args, LABELS)
    web = WebConsole(d, args, token, truth)
    if web.frames is not None:
        d.on(web.frames, web.on_frame)
    if web.boxes is not None:
        d.on(web.boxes, web.on_result)
    d.every(SUBSCRIBE_EVERY_S, web.follow_viewers)
    d.every(FLUSH_S, web.sink.flush)
    d.watch("events", web.events_thread)
    d.every(PEER_CHECK_S, web.check_peers)
    d.on_reload(web.reload)
    d.reloadable = {"token"}
    d.gauges(web.gauges)
    d.stats_extra(web.stats_extra)
    d.watch("http", web.http.thread, fatal=True)
    d.log.info("web console started", url=f"http://{args.bind}:{web.http.port}/", auth_required=web.auth.required,
               max_connections=web.max_connections, max_connections_per_address=args.max_connections_per_address,
               fd_limit=web.fd_limit, trusted_proxies=args.trusted_proxy or [],
               subscribe=args.subscribe, detections=args.detections, sink=args.sink, events=args.events,
               data_dir=args.data_dir,
               recordings=args.recordings, daemons=[f"{r}={a}" for r, a in args.daemons or []])
    code = d.run(cleanup=web.close)
    d.log.info("web console stopped", stats=d.stats())
    return code


class WebConsole:
    """The console's state: the running config and whether the file loads (``truth``), the live
    hub (web.live), the events index and the recorder's kept clips, the HTTP server and its door,
    and the two SUBs; its methods are the SUBs' handlers, the timers, the events thread, the
    reload and the close."""

    def __init__(self, d: Daemon, args: WebSettings, token: str | None, truth: ConfigTruth) -> None:
        from camwire.web import recordings
        from camwire.web.api import make_app
        from camwire.web.console import Console
        from camwire.web.door import Door, Limits, connection_cap, raise_fd_limit
        from camwire.web.events_index import EventIndex
        from camwire.web.live import LiveHub
        from camwire.web.review import Alerts

        self.d, self.args = d, args
        self.config: Config | None = d.config  # the running one: a reload takes the new
        self.truth = truth
        self.hub = LiveHub(zones=self.zones)
        self.data_dir = Path(args.data_dir) if args.data_dir else None
        self.rec_dir = Path(args.recordings) if args.recordings else None
        self.kept: set[str] = set()  # the recorders' kept clips, read again with each events poll
        # daemons on other hosts, asked over their --serve (web.remote): a sink's events and status
        # where no --events/--data-dir is given here, recorders' recordings beside --recordings
        events = Path(args.events or "events.jsonl")
        self.remote = (Remote.of(d.ctx, args.daemons, d.curve, self.rec_dir, events if args.events else None)
                       if args.daemons else None)
        recorded = bool(self.rec_dir or (self.remote and self.remote.recorders))
        # the events file here, if any, and those of the sinks on other hosts (followed by the events thread)
        self.index = EventIndex(events, self.data_dir or events.parent, kept=self.is_kept if recorded else None)
        self.auth = Auth(token)
        # a temporary folder (no data dir to write beside) goes with the console: nothing is left in /tmp
        self.temp_cache: Path | None = None
        clips = None
        if recorded:
            cache_dir, temporary = _cache_dir(self.data_dir)
            self.temp_cache = cache_dir if temporary else None
            clips = recordings.ClipCache(cache_dir, args.cache_max_bytes)
        self.fd_limit = raise_fd_limit()
        self.max_connections = connection_cap(args.max_connections, self.fd_limit)
        if args.max_connections is not None and self.max_connections < args.max_connections:
            d.log.warning("--max-connections is more than the limit on open files allows; lowered",
                          asked=args.max_connections, max_connections=self.max_connections, fd_limit=self.fd_limit)
        self.http_repeats = RepeatLimiter(d.log)  # the HTTP thread's own: one line a minute per reason
        self.door = Door(Limits(header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                                per_address=args.max_connections_per_address, total=self.max_connections,
                                trusted=tuple(network(t) for t in args.trusted_proxy or ())), self.note)
        # PUSHes to the sinks' --bind (common.sinks: each camera's switch to the sink that owns it)
        self.sink = SinkLink(Sinks(d, args.sink, sndhwm=SNDHWM, linger=1000, immediate=True) if args.sink else None)
        console = Console(hub=self.hub, sink=self.sink, index=self.index, auth=self.auth, data_dir=self.data_dir,
                          recordings=self.rec_dir, clips=clips, reload=self.reload_all, config=self.running_config,
                          config_state=self.truth.answer,
                          live_possible=bool(args.subscribe), counters=d.counters, bind=args.bind, door=self.door,
                          alerts=Alerts.of(args.alert_labels, args.alert_zones), remote=self.remote)
        self.http = Http(make_app(console), self.door, args.bind, args.port)
        self.peers = []
        self.frames: zmq.Socket | None = None
        self.boxes: zmq.Socket | None = None
        if args.subscribe:
            self.frames = d.socket(zmq.SUB, rcvhwm=SUB_HWM, linger=0)
            self.peers.append(d.peer_watch(self.frames, args.subscribe, SERVER_OF["subscribe"]))
        if args.detections:
            self.boxes = d.socket(zmq.SUB, rcvhwm=64, linger=0)
            self.peers.append(d.peer_watch(self.boxes, args.detections, SERVER_OF["detections"]))
        if self.sink.sinks is not None:
            self.peers += self.sink.sinks.peers  # whether each sink is there
        self.subscribed: set[str] = set()

    # -- what the HTTP side asks (from its own thread) --------------------------------------------

    def running_config(self) -> Config | None:
        return self.config

    def zones(self, camera: str) -> dict:
        """A camera's zones in the running config, drawn on its live view."""
        cfg = self.config
        return dict(cfg.cameras[camera].zones) if cfg is not None and camera in cfg.cameras else {}

    def is_kept(self, event_id: str) -> bool:
        return event_id in self.kept

    def note(self, counter: str, reason: str, client: str) -> None:
        """The door's: a client refused or cut off, counted and logged (once a minute per reason)."""
        self.d.counters.add(counter, reason)
        self.http_repeats(f"{counter}:{reason}", "an HTTP client was refused or cut off", reason=reason, client=client)

    def reload_all(self) -> dict[str, Any]:
        """``POST /api/reload``: the file checked as the console reads it, then every daemon started
        with it on this host signalled (each judges its own part), and every daemon of ``--daemon``
        asked over the network (each one's answer: applied, refused at its FILE:LINE, unreachable)."""
        if self.config is None:
            raise OSError("started without --config: there is no file to reload")
        self.truth.load(self.config.path)  # refused here (ConfigError with its line): nothing is signalled
        answers = self.remote.reload_all() if self.remote is not None else []
        return {"signalled": signal_daemons(self.config.path), "daemons": answers}

    # -- the loop's --------------------------------------------------------------------------------

    def on_frame(self, parts: list[zmq.Frame]) -> None:
        """One message of the frames SUB: a watched camera's frame (its Status/Eos are not subscribed to)."""
        self.hub.on_frame([p.buffer for p in parts])

    def on_result(self, parts: list[zmq.Frame]) -> None:
        """One message of the detections SUB: a watched camera's result (boxes only)."""
        self.hub.on_result(wire.single([p.buffer for p in parts], wire.Result))

    def follow_viewers(self) -> None:
        """Subscribe to the cameras someone watches now, and only those."""
        want = self.hub.wanted()
        for camera in want - self.subscribed:
            for sock, kind in ((self.frames, wire.FrameHeader), (self.boxes, wire.Result)):
                if sock is not None:
                    sock.setsockopt(zmq.SUBSCRIBE, wire.camera_topic(kind, camera))
        for camera in self.subscribed - want:
            for sock, kind in ((self.frames, wire.FrameHeader), (self.boxes, wire.Result)):
                if sock is not None:
                    sock.setsockopt(zmq.UNSUBSCRIBE, wire.camera_topic(kind, camera))
        self.subscribed = want

    def events_thread(self) -> threading.Thread:
        """The events file and the kept clips, read on a thread of their own: a big backlog at
        start never holds up the sockets (a live view's packets would pile up and be lost)."""
        return threading.Thread(target=self._follow_events, name="events", daemon=True)

    def _follow_events(self) -> None:
        from camwire.recorder.catalog import kept_ids

        while not self.d.stop.is_set():
            kept = kept_ids(self.rec_dir) if self.rec_dir is not None else set()
            if self.remote is not None:
                self.remote.hosts()  # who answers, and which recorder is this host's own (every few s)
            if self.remote is not None and self.remote.recorders:
                kept |= self.remote.kept()
            self.kept = kept
            taken = self.index.poll()
            if self.remote is not None and self.remote.sinks:
                taken += self.remote.follow_events(self.index.ingest)
            if not taken:
                self.d.stop.wait(POLL_EVENTS_S)

    def check_peers(self) -> None:
        for p in self.peers:
            p.check()

    def reload(self, cfg: Config | None) -> None:
        if cfg is None:
            return
        self.config = cfg
        new = cfg.sections.get("web", {}).get("token")
        self.auth.set_token(expand(new, "--token") if new else token_of(self.args))
        self.d.log.info("web console reloaded", cameras=len(cfg.cameras), auth_required=self.auth.required)

    def gauges(self) -> dict:
        return {"viewers": ("live viewers connected now", (), {(): self.hub.viewer_count()}),
                "connections": ("HTTP connections open now", (), {(): self.door.open_now}),
                "requests_in_flight": ("HTTP requests being answered now", (), {(): self.door.in_flight})}

    def stats_extra(self) -> dict[str, Any]:
        return {"live": self.hub.counters_snapshot()}

    def close(self) -> None:
        self.http.stop(self.d.unwatch("http"))
        events_thread = self.d.unwatch("events")
        if events_thread is not None:
            events_thread.join(5.0)  # it sees the stop flag within POLL_EVENTS_S
        for p in self.peers:
            p.close()
        if self.remote is not None:
            self.remote.close()
        self.index.close()
        if self.temp_cache is not None:
            shutil.rmtree(self.temp_cache, ignore_errors=True)


def _cache_dir(data_dir: Path | None) -> tuple[Path, bool]:
    """Where remuxed MP4s go, and whether it is temporary: beside the sink's data when the console
    may write there, else a private temporary folder (``$TMPDIR``), removed when the console stops."""
    if data_dir is not None and os.access(data_dir, os.W_OK):
        return data_dir / "web-cache", False
    import tempfile
    return Path(tempfile.mkdtemp(prefix="camwire-web-")), True
