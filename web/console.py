"""What every route of the console serves from (:class:`Console`, built by web.daemon) and the
few things every route does the same way: find it, answer an error, count, run blocking work.
web.api and web.review_api hold the routes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from camwire.common.config import Config
from camwire.web.recordings import ClipCache
from camwire.web.auth import Auth
from camwire.web.door import Door
from camwire.web.events_index import EventIndex
from camwire.web.live import LiveHub
from camwire.web.remote import Remote
from camwire.web.review import Alerts
from camwire.web.sink_link import SinkLink


@dataclass
class Console:
    """What the routes serve from; built by web.daemon, read here."""

    hub: LiveHub
    sink: SinkLink  # a PUSH to the sink: switches, review marks (web.sink_link)
    index: EventIndex
    auth: Auth
    data_dir: Path | None
    recordings: Path | None
    clips: ClipCache | None
    reload: Callable[[], dict[str, Any]]  # validates the file and signals the daemons; raises ConfigError
    config: Callable[[], Config | None]  # the config now (a reload replaces it)
    config_state: Callable[[], dict[str, Any]]  # whether the file as it stands loads (web.daemon.ConfigTruth)
    live_possible: bool  # the console subscribes to at least one extractor
    bind: str = "127.0.0.1"  # the address it listens on (web.auth.host_ok)
    counters: Any = None
    door: Door | None = None  # caps, deadlines, the client behind a trusted proxy (web.door)
    alerts: Alerts = field(default_factory=Alerts)  # what the review page calls an alert (web.review)
    remote: Remote | None = None  # daemons on other hosts, asked over their --serve (web.remote)
    started: float = field(default_factory=time.time)

    @property
    def status_db(self) -> Path | None:
        return self.data_dir / "status.db" if self.data_dir else None

    @property
    def remote_sinks(self) -> bool:
        """Whether sinks on other hosts are asked for their status, snapshots and review marks
        (web.remote), beside what a sink on this host keeps here."""
        return self.remote is not None and bool(self.remote.sinks)


def console_of(request: web.Request) -> Console:
    return request.app["console"]


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def count(c: Console, *path: str) -> None:
    if c.counters is not None:
        c.counters.add(*path)


async def blocking(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on the default executor: file and SQLite reads never hold up the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
