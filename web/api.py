"""The web console's HTTP routes (aiohttp): the pages, the JSON API, media and the live stream.

Everything here runs on the HTTP thread's event loop; what blocks (SQLite, a clip remuxed, a JPEG
encoded) goes to the loop's executor, so one slow request never holds up the live views. What the
routes read is the :class:`Console`'s: the live hub (web.live), the events index
(web.events_index), the recorder's folder (web.recordings), the sink's status.db. The API is
listed in the README ("Web console"); every answer is JSON but the media, the pages and the
live WebSocket (web.live).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from camwire.sink.store.status_db import STALE_AFTER_S, read_refused, read_sink, read_status
from camwire.common.config import CAMERA_NAME, Config, ConfigError
from camwire.web import recordings
from camwire.web.auth import COOKIE, SESSION_S, Auth, bearer_of, change_allowed, host_ok, same_origin
from camwire.web.door import Door
from camwire.web.events_index import EventIndex, clip_key
from camwire.web.live import LiveHub
from camwire.web.live_socket import live_socket

STATIC = Path(__file__).parent / "static"
OPEN = ("/api/login", "/api/logout", "/api/whoami")  # reachable without a session
MAX_CLIP_S = 3600.0  # the longest range one request may cut
MAX_PATH_CHARS = 1024  # a media path longer than this names no file of ours
MAX_NAME_BYTES = 255  # nor does a part longer than a file name may be (NAME_MAX)
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
       "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@dataclass
class Console:
    """What the routes serve from; built by web.daemon, read here."""

    hub: LiveHub
    index: EventIndex
    auth: Auth
    data_dir: Path | None
    recordings: Path | None
    clips: recordings.ClipCache | None
    reload: Callable[[], dict[str, Any]]  # validates the file and signals the daemons; raises ConfigError
    config: Callable[[], Config | None]  # the config now (a reload replaces it)
    config_state: Callable[[], dict[str, Any]]  # whether the file as it stands loads (web.daemon.ConfigTruth)
    live_possible: bool  # the console subscribes to at least one extractor
    bind: str = "127.0.0.1"  # the address it listens on (web.auth.host_ok)
    counters: Any = None
    door: Door | None = None  # caps, deadlines, the client behind a trusted proxy (web.door)
    started: float = field(default_factory=time.time)

    @property
    def status_db(self) -> Path | None:
        return self.data_dir / "status.db" if self.data_dir else None


def make_app(console: Console) -> web.Application:
    door = [console.door.middleware] if console.door is not None else []
    app = web.Application(middlewares=[_headers, *door, _guard], client_max_size=64 * 1024)
    app["console"] = console
    r = app.router
    r.add_get("/", _index)
    r.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    r.add_post("/api/login", _login)
    r.add_post("/api/logout", _logout)
    r.add_get("/api/whoami", _whoami)
    r.add_get("/api/cameras", _cameras)
    r.add_get("/api/events", _events)
    r.add_get("/api/events/{id}", _event)
    r.add_get("/api/events/{id}/clip.mp4", _event_clip)
    r.add_get("/api/recordings", _recordings)
    r.add_get("/api/recordings/{camera}/clip.mp4", _range_clip)
    r.add_get("/api/system", _system_route)
    r.add_get("/api/config", _config_route)
    r.add_post("/api/reload", _reload)
    r.add_get("/api/live", lambda request: live_socket(console.hub, request))
    r.add_get("/media/{path:.+}", _media)
    return app


def _console(request: web.Request) -> Console:
    return request.app["console"]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# clips (remuxing up to an hour of video) get their own two threads: a few downloads at once never
# take the threads that render the live views and answer the API
_CLIPS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="clips")


async def _clip(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_CLIPS, fn, *args)


# -- middleware -------------------------------------------------------------------------------------

@web.middleware
async def _headers(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    response = await handler(request)
    if not response.prepared:  # a stream (the live socket, a file already under way) has sent its headers
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", CSP)
        if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def _guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """The policy of web.auth: the API, media and live stream need a session when a token is set;
    every write comes from this console's own pages, and needs the token but a reload on loopback."""
    c = _console(request)
    path = request.path
    if path.startswith("/static/") and not _file_name_ok(path[len("/static/"):]):
        _count(c, "refused", "bad_path")  # aiohttp's static files would answer a name too long with a 500
        return _error(400, "not a file name")
    if not (path.startswith("/api/") or path.startswith("/media/")):
        return await handler(request)
    if not host_ok(request.host, c.bind):
        _count(c, "refused", "host")
        return _error(403, f"this console answers to its own address, not {request.host[:100]!r}")
    if not same_origin(request.headers.get("Origin"), request.scheme, request.host):
        _count(c, "refused", "cross_origin")  # a page of another site, the live WebSocket included
        return _error(403, "a request from another site's page is refused")
    if path in OPEN:
        return await handler(request)
    client = request.remote or "?"
    bearer = bearer_of(request.headers.get("Authorization"))
    if c.auth.required and c.auth.locked_out(client):
        _count(c, "refused", "locked_out")
        return _error(429, "too many wrong tokens from here; wait a minute")
    if not c.auth.allowed(bearer, request.cookies.get(COOKIE)):
        if bearer is not None:
            c.auth.failed(client)  # a guess counts the same in a header as in the login form
        _count(c, "refused", "unauthorised")
        return _error(401, "log in first: this console needs its token")
    if request.method not in ("GET", "HEAD") and not change_allowed(path, c.auth.required, c.bind):
        _count(c, "refused", "no_token")
        return _error(403, "changes need a token: set [web] token (\"${CAMWIRE_WEB_TOKEN}\") and log in")
    return await handler(request)


def _count(c: Console, *path: str) -> None:
    if c.counters is not None:
        c.counters.add(*path)


# -- pages and login --------------------------------------------------------------------------------

async def _index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _login(request: web.Request) -> web.Response:
    c = _console(request)
    if not c.auth.required:
        return web.json_response({"ok": True, "auth_required": False})
    client = request.remote or "?"
    if c.auth.locked_out(client):
        _count(c, "logins", "locked_out")
        return _error(429, "too many wrong tokens from here; wait a minute")
    try:
        body = await request.json()
        given = body.get("token") if isinstance(body, dict) else None
    except (json.JSONDecodeError, UnicodeError):
        given = None
    if isinstance(given, str) and not given.isprintable():
        given = None  # a lone surrogate or a control character is no token, and no 500 either
    sid = c.auth.login(given if isinstance(given, str) else None, client)
    if sid is None:
        _count(c, "logins", "wrong_token")
        return _error(401, "wrong token")
    _count(c, "logins", "ok")
    response = web.json_response({"ok": True})
    response.set_cookie(COOKIE, sid, max_age=int(SESSION_S), httponly=True, samesite="Strict", path="/",
                        secure=request.secure)
    return response


async def _logout(request: web.Request) -> web.Response:
    _console(request).auth.logout(request.cookies.get(COOKIE))
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def _whoami(request: web.Request) -> web.Response:
    c = _console(request)
    return web.json_response({"auth_required": c.auth.required,
                              "logged_in": c.auth.allowed(bearer_of(request.headers.get("Authorization")),
                                                          request.cookies.get(COOKIE)),
                              "can_write": c.auth.required})


# -- cameras and system -----------------------------------------------------------------------------

def _status(c: Console) -> tuple[list[dict], list[dict], dict | None, list[dict]]:
    if c.status_db is None or not c.status_db.exists():
        return [], [], None, []
    try:
        cameras, workers = read_status(c.status_db)
        return cameras, workers, read_sink(c.status_db), read_refused(c.status_db)
    except sqlite3.Error:
        return [], [], None, []


def _camera_list(c: Console) -> list[dict[str, Any]]:
    rows, _workers, sink, _refused = _status(c)
    cfg = c.config()
    by_name = {r["camera"]: r for r in rows}
    names = list(dict.fromkeys([*(cfg.cameras if cfg else ()), *by_name]))
    seen = c.hub.cameras_seen()
    stale = sink is None or time.time() - (sink.get("updated_ts") or 0) > STALE_AFTER_S
    # each camera's motion as the sink holds it (status.db); worked out from the events file
    # only where the sink writes no status
    motion = c.index.motion_states() if any(by_name.get(n, {}).get("motion") is None for n in names) else {}
    out = []
    for name in names:
        row = by_name.get(name, {})
        cam = cfg.cameras.get(name) if cfg else None
        size = seen.get(name)
        state = row.get("state") or "unknown"
        out.append({
            "camera": name, "state": state, "reason": row.get("reason"), "covered": bool(row.get("covered")),
            "motion": bool(row["motion"]) if row.get("motion") is not None else motion.get(name, False),
            "fps_in": row.get("fps_in") or 0.0, "fps_used": row.get("fps_used") or 0.0,
            "last_frame_ts": row.get("last_frame_ts"), "last_error": row.get("last_error"),
            "reconnects": row.get("reconnects") or 0, "status_stale": stale,
            "live": c.live_possible,
            "width": size[0] if size else None, "height": size[1] if size else None,
            "zones": ({z: poly.points(*size).round(1).tolist() for z, poly in cam.zones.items()}
                      if cam is not None and size else {}),
            "detector": list(cam.detector) if cam is not None else [],
        })
    return out


async def _cameras(request: web.Request) -> web.Response:
    return web.json_response({"cameras": await _blocking(_camera_list, _console(request))})


def _system(c: Console) -> dict[str, Any]:
    cameras, workers, sink, refused = _status(c)
    now = time.time()
    for row in cameras:
        row["drops"] = json.loads(row["drops"]) if row.get("drops") else {}
        row["behind_s"] = round(now - row["last_frame_ts"], 3) if row.get("last_frame_ts") else None
    drops: dict[str, int] = {}
    for row in cameras:
        for why, n in row["drops"].items():
            drops[why] = drops.get(why, 0) + n
        if row.get("unserved"):
            drops["unserved"] = drops.get("unserved", 0) + row["unserved"]
    if sink is not None:
        sink["stale"] = now - (sink.get("updated_ts") or 0) > STALE_AFTER_S
    return {"sink": sink, "cameras": cameras, "workers": workers, "refused": refused, "drops": drops,
            "disk": _disk(c), "web": {"started_ts": c.started, "live": c.hub.counters_snapshot(),
                                      "events": c.index.stats()}}


def _disk(c: Console) -> dict[str, Any]:
    cfg = c.config()
    sections = cfg.sections if cfg else {}
    out: dict[str, Any] = {}
    for name, folder in (("data_dir", c.data_dir), ("recordings", c.recordings)):
        if folder is None or not folder.exists():
            continue
        usage = shutil.disk_usage(folder)
        out[name] = {"path": str(folder), "volume_total": usage.total, "volume_free": usage.free}
    if c.recordings is not None:
        out.setdefault("recordings", {}).update(recordings.usage(c.recordings))
    budgets = {"ring_max_bytes": sections.get("recorder", {}).get("max_bytes"),
               "kept_max_bytes": sections.get("recorder", {}).get("keep_max_bytes"),
               "snapshot_max_bytes": sections.get("sink", {}).get("snapshot_max_bytes")}
    out["budgets"] = {k: v for k, v in budgets.items() if v is not None}
    return out


async def _system_route(request: web.Request) -> web.Response:
    return web.json_response(await _blocking(_system, _console(request)))


async def _config_route(request: web.Request) -> web.Response:
    """Whether camwire.toml as it stands loads; refused, its ``FILE:LINE: reason`` and since when."""
    return web.json_response(_console(request).config_state())


async def _reload(request: web.Request) -> web.Response:
    c = _console(request)
    try:
        done = await _blocking(c.reload)
    except ConfigError as exc:
        _count(c, "reloads", "refused")
        return _error(400, str(exc))
    except OSError as exc:
        return _error(409, str(exc))
    _count(c, "reloads", "ok")
    return web.json_response({"ok": True, **done})


# -- events -----------------------------------------------------------------------------------------

def _number(request: web.Request, name: str) -> float | None:
    text = request.query.get(name)
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"{name}: a number, not {text!r}"}),
                                 content_type="application/json") from None
    if not math.isfinite(value):
        raise web.HTTPBadRequest(text=json.dumps({"error": f"{name}: a finite number"}), content_type="application/json")
    return value


async def _events(request: web.Request) -> web.Response:
    c, q = _console(request), request.query
    limit = _number(request, "limit")
    try:
        page = await _blocking(lambda: c.index.query(
            camera=q.get("camera") or None, label=q.get("label") or None, zone=q.get("zone") or None,
            type=q.get("type") or None, since=_number(request, "since"), until=_number(request, "until"),
            before=q.get("before") or None, limit=int(limit) if limit else 50))
    except ValueError as exc:  # a cursor that is not one
        return _error(400, f"before: {exc}")
    return web.json_response(page)


async def _event(request: web.Request) -> web.Response:
    event = await _blocking(_console(request).index.get, request.match_info["id"])
    return web.json_response(event) if event else _error(404, "no such event")


async def _event_clip(request: web.Request) -> web.StreamResponse:
    c = _console(request)
    event = await _blocking(c.index.get, request.match_info["id"])
    if event is None:
        return _error(404, "no such event")
    if c.recordings is None or c.clips is None:
        return _error(404, "no recorder folder: this console was not given one")
    try:
        mp4 = await _clip(recordings.event_clip, c.recordings, clip_key(event), c.clips)
    except LookupError:
        return _error(404, "no clip kept for this event (yet)")
    except (OSError, ValueError) as exc:
        return _error(500, f"the kept clip cannot be read: {exc}")
    return web.FileResponse(mp4, headers={"Content-Type": "video/mp4"})


# -- recordings -------------------------------------------------------------------------------------

async def _recordings(request: web.Request) -> web.Response:
    c = _console(request)
    camera = request.query.get("camera") or None
    since, until = _number(request, "since"), _number(request, "until")
    if c.recordings is None:
        return web.json_response({"cameras": {}})
    ranges = await _blocking(recordings.ranges, c.recordings, camera, since, until)
    out: dict[str, Any] = {}
    for name, spans in ranges.items():
        page = await _blocking(lambda n=name: c.index.query(camera=n, since=since, until=until, limit=500))
        out[name] = {"ranges": spans, "events": [{"id": e["id"], "ts": e.get("first_seen") or e["ts"],
                                                   "type": e["type"], "label": e.get("label")}
                                                  for e in page["events"]]}
    return web.json_response({"cameras": out})


async def _range_clip(request: web.Request) -> web.StreamResponse:
    c = _console(request)
    camera = request.match_info["camera"]
    if not CAMERA_NAME.fullmatch(camera):
        _count(c, "refused", "bad_camera")
        return _error(400, f"{camera[:70]!r} is not a camera name")
    start, end = _number(request, "start"), _number(request, "end")
    if start is not None and end is not None:
        start, end = round(start, 1), round(end, 1)  # one cached file for requests a frame apart
    if start is None or end is None or not 0 < end - start <= MAX_CLIP_S:
        return _error(400, f"start and end: seconds since the epoch, end after start, at most {MAX_CLIP_S:.0f} s apart")
    if c.recordings is None or c.clips is None:
        return _error(404, "no recorder folder: this console was not given one")
    try:
        mp4 = await _clip(recordings.range_clip, c.recordings, camera, start, end, c.clips)
    except LookupError:
        return _error(404, "nothing recorded in that range")
    headers = {"Content-Type": "video/mp4"}
    if request.query.get("download"):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(start))
        headers["Content-Disposition"] = f'attachment; filename="{camera}-{stamp}-{end - start:.0f}s.mp4"'
    return web.FileResponse(mp4, headers=headers)


# -- media ------------------------------------------------------------------------------------------

async def _media(request: web.Request) -> web.StreamResponse:
    """A snapshot under the sink's data dir, and nothing else there (status.db, events)."""
    c = _console(request)
    if c.data_dir is None:
        return _error(404, "no data dir")
    name = request.match_info["path"]
    if not _file_name_ok(name):
        _count(c, "refused", "bad_path")
        return _error(400, "not a file name")
    try:
        root = (c.data_dir / "snapshots").resolve()
        path = (c.data_dir / name).resolve()
        found = path.is_relative_to(root) and path.is_file()
    except (OSError, RuntimeError):  # a link loop, a path the file system will not take
        found = False
    if not found:
        return _error(404, "no such file")
    return web.FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})


def _file_name_ok(text: str) -> bool:
    """Whether a path from a URL could name a file of ours: no NUL or other control character,
    no empty, ``.`` or ``..`` part, no lone surrogate (bad percent-encoding, decoded), nothing
    longer than a file name or a path may be. Anything else would reach the file system as an
    error (a 500), not as a file that is not there."""
    if len(text) > MAX_PATH_CHARS:
        return False
    for part in text.split("/"):
        if part in ("", ".", "..") or not part.isprintable():
            return False
        try:
            if len(part.encode()) > MAX_NAME_BYTES:
                return False
        except UnicodeEncodeError:
            return False
    return True
