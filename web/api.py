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
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from camwire.sink.store.status_db import STALE_AFTER_S, read_refused, read_sink, read_status
from camwire.common import wire
from camwire.common.config import CAMERA_NAME, ConfigError
from camwire.common import frame_account
from camwire.recorder import export, previews
from camwire.web import recordings
from camwire.web.auth import COOKIE, SESSION_S, bearer_of, change_allowed, host_ok, same_origin
from camwire.web.events_index import clip_key
from camwire.web.live_socket import live_socket
from camwire.web.console import Console, blocking, console_of, count, error
from camwire.web.remote import joined
from camwire.web.sink_link import SinkUnreachable, delivered
from camwire.web import review_api

STATIC = Path(__file__).parent / "static"
OPEN = ("/api/login", "/api/logout", "/api/whoami")  # reachable without a session
NEED_TOKEN = "changes need a token: set [web] token (\"${CAMWIRE_WEB_TOKEN}\") and log in"
SWITCHES_PATH = "/api/cameras/{name}/switches"  # POST: a camera's switch set (web.auth.change_allowed judges it)
MAX_CLIP_S = 3600.0  # the longest range one request may cut
MAX_TS = 4e9  # a time asked of the recordings: past it (the year 2096) no index holds anything
MAX_PATH_CHARS = 1024  # a media path longer than this names no file of ours
MAX_NAME_BYTES = 255  # nor does a part longer than a file name may be (NAME_MAX)
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
       "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


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
    r.add_post(SWITCHES_PATH, _set_switch)
    r.add_get("/api/events", _events)
    r.add_get("/api/events/{id}", _event)
    r.add_get("/api/events/{id}/clip.mp4", _event_clip)
    r.add_get("/api/recordings", _recordings)
    r.add_get("/api/recordings/{camera}/clip.mp4", _range_clip)
    r.add_get("/api/recordings/{camera}/preview.jpg", _preview)
    r.add_get("/api/system", _system_route)
    r.add_get("/api/config", _config_route)
    r.add_post("/api/reload", _reload)
    review_api.add_routes(r)  # /api/review...
    r.add_get("/api/live", lambda request: live_socket(console.hub, request))
    r.add_get("/media/{path:.+}", _media)
    return app


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
    c = console_of(request)
    path = request.path
    if path.startswith("/static/") and not _file_name_ok(path[len("/static/"):]):
        count(c, "refused", "bad_path")  # aiohttp's static files would answer a name too long with a 500
        return error(400, "not a file name")
    if not (path.startswith("/api/") or path.startswith("/media/")):
        return await handler(request)
    if not host_ok(request.host, c.bind):
        count(c, "refused", "host")
        return error(403, f"this console answers to its own address, not {request.host[:100]!r}")
    if not same_origin(request.headers.get("Origin"), request.scheme, request.host):
        count(c, "refused", "cross_origin")  # a page of another site, the live WebSocket included
        return error(403, "a request from another site's page is refused")
    if path in OPEN:
        return await handler(request)
    client = request.remote or "?"
    bearer = bearer_of(request.headers.get("Authorization"))
    if c.auth.required and c.auth.locked_out(client):
        count(c, "refused", "locked_out")
        return error(429, "too many wrong tokens from here; wait a minute")
    if not c.auth.allowed(bearer, request.cookies.get(COOKIE)):
        if bearer is not None:
            c.auth.failed(client)  # a guess counts the same in a header as in the login form
        count(c, "refused", "unauthorised")
        return error(401, "log in first: this console needs its token")
    if request.method not in ("GET", "HEAD") and not change_allowed(path, c.auth.required, c.bind):
        count(c, "refused", "no_token")
        return error(403, NEED_TOKEN)
    return await handler(request)


# -- pages and login --------------------------------------------------------------------------------

async def _index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _login(request: web.Request) -> web.Response:
    c = console_of(request)
    if not c.auth.required:
        return web.json_response({"ok": True, "auth_required": False})
    client = request.remote or "?"
    if c.auth.locked_out(client):
        count(c, "logins", "locked_out")
        return error(429, "too many wrong tokens from here; wait a minute")
    try:
        body = await request.json()
        given = body.get("token") if isinstance(body, dict) else None
    except (json.JSONDecodeError, UnicodeError):
        given = None
    if isinstance(given, str) and not given.isprintable():
        given = None  # a lone surrogate or a control character is no token, and no 500 either
    sid = c.auth.login(given if isinstance(given, str) else None, client)
    if sid is None:
        count(c, "logins", "wrong_token")
        return error(401, "wrong token")
    count(c, "logins", "ok")
    response = web.json_response({"ok": True})
    response.set_cookie(COOKIE, sid, max_age=int(SESSION_S), httponly=True, samesite="Strict", path="/",
                        secure=request.secure)
    return response


async def _logout(request: web.Request) -> web.Response:
    console_of(request).auth.logout(request.cookies.get(COOKIE))
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def _whoami(request: web.Request) -> web.Response:
    c = console_of(request)
    return web.json_response({"auth_required": c.auth.required,
                              "logged_in": c.auth.allowed(bearer_of(request.headers.get("Authorization")),
                                                          request.cookies.get(COOKIE)),
                              "can_write": c.auth.required})


# -- cameras and system -----------------------------------------------------------------------------

def _status(c: Console) -> tuple[list[dict], list[dict], dict | None, list[dict]]:
    """status.db's rows: the sink's file on this host (the fast path), and those of the sinks on
    other hosts (--daemon), together; a camera's row from here wins."""
    here: tuple[list[dict], list[dict], dict | None, list[dict]] = ([], [], None, [])
    if c.status_db is not None and c.status_db.exists():
        try:
            cameras, workers = read_status(c.status_db)
            here = cameras, workers, read_sink(c.status_db), read_refused(c.status_db)
        except sqlite3.Error:
            pass
    if not c.remote_sinks:
        return here
    cameras, workers, sink, refused = c.remote.status()  # type: ignore[union-attr]
    known = {r["camera"] for r in here[0]}
    by_name = {w["name"]: w for w in [*workers, *here[1]]}
    return ([*here[0], *(r for r in cameras if r["camera"] not in known)], list(by_name.values()),
            here[2] or sink, [*here[3], *refused])


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
    reached = c.sink.reached()  # once for all: which sinks the switches can reach now
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
            # as the sink keeps them (sink.switches, status.db); all on before it has said
            "switches": row.get("switches") or dict.fromkeys(wire.SWITCHES, True),
            # why its switches cannot be set now though others' can (its own sink away), or None
            "switches_away": c.sink.away(name, reached),
        })
    return out


async def _cameras(request: web.Request) -> web.Response:
    """The cameras, and whether their switches can be set from here now (``switches``: ``settable``,
    and ``why`` not: the page greys its toggles out with it)."""
    c = console_of(request)
    why = _switches_locked(c)
    return web.json_response({"cameras": await blocking(_camera_list, c),
                              "switches": {"settable": why is None, "why": why}})


def _switches_locked(c: Console) -> str | None:
    """Why a camera's switch cannot be set from this console now, or None."""
    if not change_allowed(SWITCHES_PATH, c.auth.required, c.bind):
        return NEED_TOKEN
    return c.sink.unreachable()


async def _set_switch(request: web.Request) -> web.Response:
    """``POST /api/cameras/{name}/switches`` ``{"switch": "detect", "on": false}``: a ``wire.Switch``
    to the sink (web.sink_link), which keeps it and tells it (sink.switches); ``{"ok": true}`` once
    it went, 503 with why when the sink is not there. The new state shows in ``/api/cameras``
    once the sink has written it (status.db, every second)."""
    c, name = console_of(request), request.match_info["name"]
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeError):
        body = None
    switch, on = (body.get("switch"), body.get("on")) if isinstance(body, dict) else (None, None)
    if switch not in wire.SWITCHES or not isinstance(on, bool):
        count(c, "refused", "bad_switch")
        return error(400, f'{{"switch": {"|".join(wire.SWITCHES)}, "on": true|false}}, not {str(body)[:100]}')
    if not CAMERA_NAME.fullmatch(name) or not await blocking(_known, c, name):
        count(c, "refused", "bad_camera")
        return error(400, f"no camera named {name[:70]!r}")
    try:
        await delivered(c.sink, wire.Switch(camera=name, switch=switch, on=on, by=f"console {request.remote or '?'}"))
    except SinkUnreachable as exc:
        count(c, "switches", "unsent")
        return error(503, str(exc))
    count(c, "switches", "sent")
    return web.json_response({"ok": True})


def _known(c: Console, name: str) -> bool:
    """A camera of the file, or one the sink has a row of."""
    cfg = c.config()
    return (cfg is not None and name in cfg.cameras) or any(r["camera"] == name for r in _status(c)[0])


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
        for bucket in frame_account.LOSSES:  # the pool's side (common.frame_account), beside the extractor's
            if n := (row.get("pool") or {}).get(bucket):
                drops[f"pool/{bucket}"] = drops.get(f"pool/{bucket}", 0) + n
    if sink is not None:
        sink["stale"] = now - (sink.get("updated_ts") or 0) > STALE_AFTER_S
    return {"sink": sink, "cameras": cameras, "workers": workers, "refused": refused, "drops": drops,
            "daemons": c.remote.hosts() if c.remote is not None else [],  # on other hosts: which answer
            "frame_buckets": [*frame_account.BUCKETS, *frame_account.OPEN],  # the columns of each camera's ``pool``, in order
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
    usage: dict[str, int] = export.usage(c.recordings) if c.recordings is not None else {}
    if c.remote is not None and c.remote.recorders:
        for k, v in c.remote.usage().items():
            usage[k] = usage.get(k, 0) + v
    if usage:
        out.setdefault("recordings", {}).update(usage)
    budgets = {"ring_max_bytes": sections.get("recorder", {}).get("max_bytes"),
               "kept_max_bytes": sections.get("recorder", {}).get("keep_max_bytes"),
               "snapshot_max_bytes": sections.get("sink", {}).get("snapshot_max_bytes")}
    out["budgets"] = {k: v for k, v in budgets.items() if v is not None}
    return out


async def _system_route(request: web.Request) -> web.Response:
    return web.json_response(await blocking(_system, console_of(request)))


async def _config_route(request: web.Request) -> web.Response:
    """Whether camwire.toml as it stands loads; refused, its ``FILE:LINE: reason`` and since when."""
    return web.json_response(console_of(request).config_state())


async def _reload(request: web.Request) -> web.Response:
    c = console_of(request)
    try:
        done = await blocking(c.reload)
    except ConfigError as exc:
        count(c, "reloads", "refused")
        return error(400, str(exc))
    except OSError as exc:
        return error(409, str(exc))
    count(c, "reloads", "ok")
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
    c, q = console_of(request), request.query
    limit = _number(request, "limit")
    try:
        page = await blocking(lambda: c.index.query(
            camera=q.get("camera") or None, label=q.get("label") or None, zone=q.get("zone") or None,
            type=q.get("type") or None, since=_number(request, "since"), until=_number(request, "until"),
            before=q.get("before") or None, limit=int(limit) if limit else 50))
    except ValueError as exc:  # a cursor that is not one
        return error(400, f"before: {exc}")
    return web.json_response(page)


async def _event(request: web.Request) -> web.Response:
    event = await blocking(console_of(request).index.get, request.match_info["id"])
    return web.json_response(event) if event else error(404, "no such event")


async def _event_clip(request: web.Request) -> web.StreamResponse:
    c = console_of(request)
    event = await blocking(c.index.get, request.match_info["id"])
    if event is None:
        return error(404, "no such event")
    if c.clips is None:
        return error(404, "no recorder folder or recorder daemon: this console was not given one")
    try:
        mp4 = await _clip(_event_mp4, c, clip_key(event))
    except LookupError:
        return error(404, "no clip kept for this event (yet)")
    except (OSError, ValueError) as exc:
        return error(500, f"the kept clip cannot be read: {exc}")
    return web.FileResponse(mp4, headers={"Content-Type": "video/mp4"})


def _event_mp4(c: Console, key: str) -> Path:
    """An event's kept clip: from the recorder on this host if it keeps it, else from the one
    that does on another host."""
    assert c.clips is not None
    if c.recordings is not None:
        try:
            return recordings.event_clip(c.recordings, key, c.clips)
        except LookupError:
            if c.remote is None:
                raise
    if c.remote is None:
        raise LookupError(f"no clip kept for {key!r}")
    return c.remote.event_clip(key, c.clips)


def _ranges(c: Console, camera: str | None, since: float | None, until: float | None) -> dict[str, list]:
    """Recorded ranges of the recorder here and those listed with --daemon, one timeline per camera."""
    ranges = {k: [list(s) for s in v] for k, v in export.ranges(c.recordings, camera, since, until).items()} \
        if c.recordings is not None else {}
    if c.remote is not None and c.remote.recorders:
        for name, spans in c.remote.ranges(camera, since, until).items():
            ranges[name] = joined([*ranges.get(name, []), *spans])
    return ranges


def _range_mp4(c: Console, camera: str, start: float, end: float) -> Path:
    assert c.clips is not None
    if c.recordings is not None:
        try:
            return recordings.range_clip(c.recordings, camera, start, end, c.clips)
        except LookupError:
            if c.remote is None:
                raise
    if c.remote is None:
        raise LookupError(f"nothing recorded for {camera!r} in that range")
    return c.remote.range_clip(camera, start, end, c.clips)


def _preview_jpeg(c: Console, camera: str, ts: float) -> bytes:
    if c.recordings is not None:
        try:
            return previews.preview_jpeg(c.recordings, camera, ts)
        except LookupError:
            if c.remote is None:
                raise
    if c.remote is None:
        raise LookupError(f"nothing recorded for {camera!r} at {ts}")
    return c.remote.preview(camera, ts)


# -- recordings -------------------------------------------------------------------------------------

async def _recordings(request: web.Request) -> web.Response:
    c = console_of(request)
    camera = request.query.get("camera") or None
    since, until = _number(request, "since"), _number(request, "until")
    ranges = await blocking(_ranges, c, camera, since, until)
    out: dict[str, Any] = {}
    for name, spans in ranges.items():
        page = await blocking(lambda n=name: c.index.query(camera=n, since=since, until=until, limit=500))
        out[name] = {"ranges": spans, "events": [{"id": e["id"], "ts": e.get("first_seen") or e["ts"],
                                                   "type": e["type"], "label": e.get("label")}
                                                  for e in page["events"]]}
    return web.json_response({"cameras": out})


def _bad_camera(c: Console, camera: str) -> web.Response | None:
    """The 400 for a path's camera that cannot be a camera's name (counted), or None."""
    if CAMERA_NAME.fullmatch(camera):
        return None
    count(c, "refused", "bad_camera")
    return error(400, f"{camera[:70]!r} is not a camera name")


async def _range_clip(request: web.Request) -> web.StreamResponse:
    c = console_of(request)
    camera = request.match_info["camera"]
    if (refused := _bad_camera(c, camera)) is not None:
        return refused
    start, end = _number(request, "start"), _number(request, "end")
    if start is not None and end is not None:
        start, end = round(start, 1), round(end, 1)  # one cached file for requests a frame apart
    if start is None or end is None or not 0 < end - start <= MAX_CLIP_S:
        return error(400, f"start and end: seconds since the epoch, end after start, at most {MAX_CLIP_S:.0f} s apart")
    if c.clips is None:
        return error(404, "no recorder folder or recorder daemon: this console was not given one")
    try:
        mp4 = await _clip(_range_mp4, c, camera, start, end)
    except LookupError:
        return error(404, "nothing recorded in that range")
    headers = {"Content-Type": "video/mp4"}
    if request.query.get("download"):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(start))
        headers["Content-Disposition"] = f'attachment; filename="{camera}-{stamp}-{end - start:.0f}s.mp4"'
    return web.FileResponse(mp4, headers=headers)


async def _preview(request: web.Request) -> web.StreamResponse:
    """The timeline's still: the key frame at or before ``ts`` (recorder.previews), small, as JPEG."""
    c = console_of(request)
    camera = request.match_info["camera"]
    if (refused := _bad_camera(c, camera)) is not None:
        return refused
    try:
        ts = _number(request, "ts")
    except web.HTTPBadRequest:
        count(c, "refused", "bad_time")
        raise
    if ts is None or not 0 <= ts <= MAX_TS:
        count(c, "refused", "bad_time")
        return error(400, "ts: seconds since the epoch")
    if c.recordings is None and (c.remote is None or not c.remote.recorders):
        return error(404, "no recorder folder or recorder daemon: this console was not given one")
    try:
        jpeg = await blocking(_preview_jpeg, c, camera, ts)
    except LookupError:
        return error(404, "nothing recorded at that time")
    # the same key frame for any ts of its group of pictures: a browser may keep it a while
    return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})


# -- media ------------------------------------------------------------------------------------------

async def _media(request: web.Request) -> web.StreamResponse:
    """A snapshot under the sink's data dir, and nothing else there (status.db, events)."""
    c = console_of(request)
    name = request.match_info["path"]
    if not _file_name_ok(name):
        count(c, "refused", "bad_path")
        return error(400, "not a file name")
    found = False
    if c.data_dir is not None:
        try:
            root = (c.data_dir / "snapshots").resolve()
            path = (c.data_dir / name).resolve()
            found = path.is_relative_to(root) and path.is_file()
        except (OSError, RuntimeError):  # a link loop, a path the file system will not take
            found = False
    if found:
        return web.FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})
    if c.remote_sinks:  # kept by a sink on another host
        try:
            body = await blocking(c.remote.snapshot, name)  # type: ignore[union-attr]
        except LookupError:
            return error(404, "no such file")
        kind = "image/jpeg" if name.endswith((".jpg", ".jpeg")) else "application/octet-stream"
        return web.Response(body=body, content_type=kind, headers={"Cache-Control": "private, max-age=3600"})
    return error(404, "no such file" if c.data_dir is not None else "no data dir")


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
