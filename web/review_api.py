"""The review page's HTTP routes (web.review groups, this module answers).

- ``GET /api/review?camera=&label=&zone=&severity=alert|detection&reviewed=0|1&user=&before=&limit=``:
  ``{"items": [...], "next": cursor}`` (web.review.page); ``reviewed`` read from the sink's
  ``--data-dir``/reviews.db, read-only (sink.store.reviews).
- ``GET /api/review/filters``: the cameras, labels, zones and severities the selects offer.
- ``POST /api/review/reviewed`` ``{"ids": [object ids], "reviewed": true, "user": null}``: a
  ``wire.Reviewed`` sent to every sink (web.sink_link), which keeps it; ``{"ok": true}`` once
  ZeroMQ took it for each, 503 with the reason (the sinks not connected) otherwise. Like a reload, open on a
  loopback bind without a token, else only with it (web.auth.change_allowed).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
from aiohttp import web

from camwire.common import wire
from camwire.sink.store.reviews import FILE as REVIEWS_FILE, read_reviewed
from camwire.web import review
from camwire.web.console import Console, blocking, console_of, count, error
from camwire.web.sink_link import SinkUnreachable, delivered

MAX_IDS = 1024  # as wire.Reviewed takes in one message


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/review", _items)
    router.add_get("/api/review/filters", _filters)
    router.add_post("/api/review/reviewed", _mark)


def reviewed_of(c: Console, user: str | None):
    """The object ids of a list that the sink's reviews.db marks (for everyone, or ``user``)."""
    path = c.data_dir / REVIEWS_FILE if c.data_dir is not None else None

    def reviewed(ids: Any) -> set[str]:
        ids = list(ids)
        here = read_reviewed(path, ids, user) if path is not None else set()
        # marks kept by sinks on other hosts too (each keeps those sent to it)
        return here | c.remote.reviewed(ids, user) if c.remote_sinks else here  # type: ignore[union-attr]

    return reviewed


async def _items(request: web.Request) -> web.Response:
    c, q = console_of(request), request.query
    try:
        limit = int(q.get("limit") or 50)
        before = float(q["before"]) if q.get("before") else None
        if before is not None and not math.isfinite(before):
            raise ValueError
    except ValueError:
        return error(400, "limit: a whole number; before: the 'next' of the page before")
    sev = q.get("severity") or None
    if sev is not None and sev not in review.SEVERITIES:
        return error(400, f"severity: alert or detection, not {sev[:40]!r}")
    flag = q.get("reviewed")
    if flag not in (None, "", "0", "1"):
        return error(400, "reviewed: 0 or 1")
    user = q.get("user") or None
    page = await blocking(lambda: review.page(
        c.index, c.alerts, reviewed_of(c, user), camera=q.get("camera") or None, label=q.get("label") or None,
        zone=q.get("zone") or None, severity_is=sev, reviewed=None if flag in (None, "") else flag == "1",
        before=before, limit=limit))
    return web.json_response(page)


async def _filters(request: web.Request) -> web.Response:
    c = console_of(request)
    out = await blocking(review.filters, c.index)
    out["alert_labels"], out["alert_zones"] = sorted(c.alerts.labels), sorted(c.alerts.zones)
    return web.json_response(out)


class _Marks(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[str]
    reviewed: bool = True
    user: str | None = None


async def _mark(request: web.Request) -> web.Response:
    c = console_of(request)
    try:
        body = msgspec.json.decode(await request.read(), type=_Marks)
        msg = wire.Reviewed(object_ids=list(dict.fromkeys(body.ids)), by=f"console {request.remote or '?'}",
                            reviewed=body.reviewed, user=body.user)
        # the wire's own limits (id length, how many, a user's name), judged here, not by the sink
        msg = wire.unpack(wire.pack(msg))
    except (msgspec.DecodeError, msgspec.ValidationError, wire.MalformedMessage) as exc:
        count(c, "refused", "bad_review")
        return error(400, f'{{"ids": [object ids, 1 to {MAX_IDS}], "reviewed": true|false, "user": null|NAME}}: '
                           f"{str(exc)[:200]}")
    try:
        await delivered(c.sink, msg)
    except SinkUnreachable as exc:
        count(c, "reviews", "unsent")
        return error(503, str(exc))
    count(c, "reviews", "sent")
    return web.json_response({"ok": True, "ids": msg.object_ids, "reviewed": msg.reviewed})

