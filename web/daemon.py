"""``camwire web``: the web console, on the common.daemon skeleton.

It reads what the other daemons already produce and changes none of them:

- SUB, connected to every ``--subscribe`` address (the extractors' ``--publish``): ``frame``
  messages, but only of the cameras someone is watching now. The subscription is per camera
  (common.wire.camera_topic), so the extractor's PUB filters and an unwatched camera's video never
  crosses the wire; with no viewer the console subscribes to nothing and costs next to nothing.
- SUB, connected to the sink's ``--publish-detections`` (``--detections``): each frame's
  ``result`` (boxes only) of the watched cameras, drawn on their live images.
- The sink's ``--events`` file (followed, web.events_index) and ``--data-dir`` (status.db,
  snapshots); the recorder's ``--recordings`` folder (index.db, segments, kept clips).

The main thread owns both sockets and polls them with the skeleton's loop; the HTTP server
(aiohttp, web.api) runs in a second thread with its own event loop, watched (``fatal``: a
console whose server died exits 1). The two meet only in thread-safe objects: the live hub
(web.live: the newest frame per camera; the HTTP side asks for JPEGs) and the events index.

SIGHUP (or ``POST /api/reload``, which checks the file first and then signals every camwire
daemon on this host started with the same ``--config``) takes the new cameras, zones and token.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Any

import zmq

from camwire.common import wire
from camwire.common.config import DAEMONS, Config
from camwire.common.curve import SERVER_OF
from camwire.common.daemon import Daemon
from camwire.common.env import expand
from camwire.common.logs import RepeatLimiter
from camwire.common.sockets import OperatorError, check_addresses
from camwire.common.units import duration, positive, size
from camwire.web.auth import Auth, check_bind, network

# aiohttp, OpenCV and the console's own modules are imported by main(): every daemon judging the
# whole file builds this parser, and none of them should load a web server to do it

SUB_HWM = 8  # frames per subscription: a console behind takes the newest, never a backlog
POLL_EVENTS_S = 0.5
SUBSCRIBE_EVERY_S = 0.2  # how soon a new viewer's camera starts to flow
PEER_CHECK_S = 5.0
LABELS = {"live": ("what",), "refused": ("reason",), "logins": ("outcome",), "api_reloads": ("outcome",),
          "cut_off": ("reason",)}
TOKEN_ENV = "CAMWIRE_WEB_TOKEN"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                   help="the address the console listens on: this host only by default; another needs a token")
    p.add_argument("--port", type=int, default=8080, metavar="PORT", help="the console's HTTP port (default 8080)")
    p.add_argument("--token", metavar="TOKEN",
                   help="the password for the console and every change made through it; put it in the file as "
                        f"[web] token = \"${{{TOKEN_ENV}}}\" (or the environment's {TOKEN_ENV}), not on a command line")
    p.add_argument("--data-dir", metavar="DIR", help="the sink's --data-dir: status.db and snapshots")
    p.add_argument("--events", metavar="PATH", help="the sink's --events file, followed for the events page")
    p.add_argument("--recordings", metavar="DIR", help="the recorder's --dir: recordings and kept clips")
    p.add_argument("--subscribe", action="append", metavar="ADDR",
                   help="an extractor's --publish, for live views; repeat for more")
    p.add_argument("--detections", metavar="ADDR", help="the sink's --publish-detections, for boxes on live views")
    p.add_argument("--cache-max-bytes", type=size, default="1G", metavar="SIZE",
                   help="MP4s remuxed for the browser are kept up to this much (default 1G)")
    p.add_argument("--header-timeout", type=positive(duration), default="10s", metavar="S",
                   help="a request's headers must be in within this of its first byte, or the connection is cut")
    p.add_argument("--body-timeout", type=positive(duration), default="10s", metavar="S",
                   help="a request's body must be in within this of its headers, or it is answered 408")
    p.add_argument("--max-connections", type=positive(int), metavar="N",
                   help="connections open at once, from everyone (default: 4096, or fewer where the limit "
                        "on open files is lower: a quarter of it is kept for files and sockets)")
    p.add_argument("--max-connections-per-address", type=positive(int), default=64, metavar="N",
                   help="connections open at once from one address (requests in flight, behind a trusted proxy)")
    p.add_argument("--trusted-proxy", action="append", type=proxy, metavar="ADDR",
                   help="a reverse proxy's address or network: only from it is X-Forwarded-For believed (the "
                        "client is its rightmost hop that is not a trusted proxy); repeat for more")
    p.add_argument("--stats", metavar="PATH", help="write counters as JSON here at exit")


def proxy(text: str) -> str:
    """A --trusted-proxy as given, checked: an address or a network."""
    try:
        network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def token_of(args: argparse.Namespace) -> str | None:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    return expand(token, "--token") if token else None


def check(args: argparse.Namespace) -> None:
    """What the console would refuse, judged before it starts (check-config, a reload)."""
    check_addresses(args, "subscribe", "detections")
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


def main(args: argparse.Namespace) -> int:
    from camwire.recorder.catalog import kept_ids
    from camwire.web import recordings
    from camwire.web.api import Console, make_app
    from camwire.web.door import Door, Limits, connection_cap, raise_fd_limit
    from camwire.web.events_index import EventIndex
    from camwire.web.live import LiveHub

    token = token_of(args)
    check_bind(args.bind, token)
    d = Daemon("web", args, LABELS)
    cfg_now: list[Config | None] = [d.config]
    hub = LiveHub(zones=lambda camera: dict(cfg_now[0].cameras[camera].zones)
                  if cfg_now[0] is not None and camera in cfg_now[0].cameras else {})
    data_dir = Path(args.data_dir) if args.data_dir else None
    rec_dir = Path(args.recordings) if args.recordings else None
    kept_now: list[set[str]] = [set()]  # the recorder's kept clips, read again with each events poll
    events = Path(args.events or "events.jsonl")
    index = EventIndex(events, data_dir or events.parent,
                       kept=(lambda event_id: event_id in kept_now[0]) if rec_dir else None)
    auth = Auth(token)
    clips = recordings.ClipCache(_cache_dir(data_dir), args.cache_max_bytes) if rec_dir else None
    fd_limit = raise_fd_limit()
    total = connection_cap(args.max_connections, fd_limit)
    if args.max_connections is not None and total < args.max_connections:
        d.log.warning("--max-connections is more than the limit on open files allows; lowered",
                      asked=args.max_connections, max_connections=total, fd_limit=fd_limit)
    http_repeats = RepeatLimiter(d.log)  # the HTTP thread's own: one line a minute per reason

    def note(counter: str, reason: str, client: str) -> None:
        d.counters.add(counter, reason)
        http_repeats(f"{counter}:{reason}", "an HTTP client was refused or cut off", reason=reason, client=client)

    door = Door(Limits(header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                       per_address=args.max_connections_per_address, total=total,
                       trusted=tuple(network(t) for t in args.trusted_proxy or ())), note)

    def reload_all() -> dict[str, Any]:
        if cfg_now[0] is None:
            raise OSError("started without --config: there is no file to reload")
        from camwire.cli import load_full
        load_full(cfg_now[0].path, running="web")  # ConfigError with its line: nothing is signalled
        return {"signalled": signal_daemons(cfg_now[0].path)}

    console = Console(hub=hub, index=index, auth=auth, data_dir=data_dir, recordings=rec_dir, clips=clips,
                      reload=reload_all, config=lambda: cfg_now[0], live_possible=bool(args.subscribe),
                      counters=d.counters, bind=args.bind, door=door)
    http = Http(make_app(console), door, args.bind, args.port)

    peers = []
    frames = boxes = None
    if args.subscribe:
        frames = d.socket(zmq.SUB, rcvhwm=SUB_HWM, linger=0)
        d.on(frames, lambda parts: on_frame(hub, parts))
        peers.append(d.peer_watch(frames, args.subscribe, SERVER_OF["subscribe"]))
    if args.detections:
        boxes = d.socket(zmq.SUB, rcvhwm=64, linger=0)
        d.on(boxes, lambda parts: on_result(hub, parts))
        peers.append(d.peer_watch(boxes, args.detections, SERVER_OF["detections"]))
    subscribed: set[str] = set()

    def follow_viewers() -> None:
        """Subscribe to the cameras someone watches now, and only those."""
        want = hub.wanted()
        for camera in want - subscribed:
            for sock, kind in ((frames, wire.FrameHeader), (boxes, wire.Result)):
                if sock is not None:
                    sock.setsockopt(zmq.SUBSCRIBE, wire.camera_topic(kind, camera))
        for camera in subscribed - want:
            for sock, kind in ((frames, wire.FrameHeader), (boxes, wire.Result)):
                if sock is not None:
                    sock.setsockopt(zmq.UNSUBSCRIBE, wire.camera_topic(kind, camera))
        subscribed.clear()
        subscribed.update(want)

    def follow_events() -> threading.Thread:
        """The events file and the kept clips, read on a thread of their own: a big backlog at
        start never holds up the sockets (a live view's packets would pile up and be lost)."""
        def loop() -> None:
            while not d.stop.is_set():
                if rec_dir is not None:
                    kept_now[0] = kept_ids(rec_dir)
                if not index.poll():
                    d.stop.wait(POLL_EVENTS_S)
        return threading.Thread(target=loop, name="events", daemon=True)

    d.every(SUBSCRIBE_EVERY_S, follow_viewers)
    d.watch("events", follow_events)
    d.every(PEER_CHECK_S, lambda: [p.check() for p in peers])

    def reload(cfg: Config | None) -> None:
        if cfg is None:
            return
        cfg_now[0] = cfg
        new = cfg.sections.get("web", {}).get("token")
        auth.set_token(expand(new, "--token") if new else token_of(args))
        d.log.info("web console reloaded", cameras=len(cfg.cameras), auth_required=auth.required)

    d.on_reload(reload)
    d.reloadable = {"token"}
    d.gauges(lambda: {"viewers": ("live viewers connected now", (), {(): hub.viewer_count()}),
                      "connections": ("HTTP connections open now", (), {(): door.open_now}),
                      "requests_in_flight": ("HTTP requests being answered now", (), {(): door.in_flight})})
    d.stats_extra(lambda: {"live": hub.counters_snapshot()})
    d.watch("http", http.thread, fatal=True)

    def cleanup() -> None:
        http.stop(d.unwatch("http"))
        events_thread = d.unwatch("events")
        if events_thread is not None:
            events_thread.join(5.0)  # it sees the stop flag within POLL_EVENTS_S
        for p in peers:
            p.close()
        index.close()

    d.log.info("web console started", url=f"http://{args.bind}:{http.port}/", auth_required=auth.required,
               max_connections=total, max_connections_per_address=args.max_connections_per_address,
               fd_limit=fd_limit, trusted_proxies=args.trusted_proxy or [],
               subscribe=args.subscribe, detections=args.detections, events=args.events, data_dir=args.data_dir,
               recordings=args.recordings)
    code = d.run(cleanup=cleanup)
    d.log.info("web console stopped", stats=d.stats())
    return code


def _cache_dir(data_dir: Path | None) -> Path:
    """Where remuxed MP4s go: beside the sink's data when the console may write there, else a
    private temporary folder."""
    if data_dir is not None and os.access(data_dir, os.W_OK):
        return data_dir / "web-cache"
    import tempfile
    return Path(tempfile.mkdtemp(prefix="camwire-web-"))


def on_frame(hub: Any, parts: list[zmq.Frame]) -> None:
    """One message of the frames SUB: a watched camera's frame (its Status/Eos are not subscribed to)."""
    hub.on_frame([p.buffer for p in parts])


def on_result(hub: Any, parts: list[zmq.Frame]) -> None:
    hub.on_result(wire.single([p.buffer for p in parts], wire.Result))
