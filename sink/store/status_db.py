"""``DATA_DIR/status.db``: its tables (written by the sink's camera_status.StatusBook) and the
readers that ``camwire status`` and the web console use. A reader opens the file read-only, so
it never blocks the sink (WAL mode)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

FLUSH_S = 1.0  # how often the sink writes it
STALE_AFTER_S = 5 * FLUSH_S  # a sink row older than this: the sink is not writing (camwire status)

SCHEMA = """
CREATE TABLE IF NOT EXISTS cameras (
    camera TEXT PRIMARY KEY, state TEXT, reason TEXT, covered INTEGER, last_frame_ts REAL,
    last_status_ts REAL, last_error TEXT, reconnects INTEGER, fps_in REAL, fps_used REAL,
    results INTEGER, updated_ts REAL, attempts INTEGER, unserved INTEGER, unserved_detectors TEXT, drops TEXT,
    motion INTEGER);
CREATE TABLE IF NOT EXISTS workers (
    name TEXT PRIMARY KEY, credits INTEGER, in_flight INTEGER, dispatched INTEGER, completed INTEGER,
    leaving INTEGER, updated_ts REAL, results INTEGER, detector TEXT);
CREATE TABLE IF NOT EXISTS refused (
    daemon TEXT, socket TEXT, reason TEXT, count INTEGER, updated_ts REAL, peers TEXT,
    PRIMARY KEY (daemon, socket, reason));
CREATE TABLE IF NOT EXISTS sink (
    name TEXT PRIMARY KEY, pid INTEGER, started_ts REAL, updated_ts REAL, stopped_ts REAL,
    write_errors TEXT, last_write_error TEXT, last_write_error_ts REAL);
"""


def read_status(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Cameras and workers as last written to ``path``, read without disturbing the sink. A
    camera's ``switches`` come as a dict (``{"detect": True, ...}``), None from an older sink; its
    ``pool`` as a dict (wire.PoolAccount's fields: common.frame_account), None until the
    ventilator reported it (or from an older sink)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        cameras = [dict(r) for r in db.execute("SELECT * FROM cameras ORDER BY camera")]
        workers = [dict(r) for r in db.execute("SELECT * FROM workers ORDER BY name")]
    finally:
        db.close()
    for row in cameras:
        row["switches"] = json.loads(row["switches"]) if row.get("switches") else None
        row["pool"] = json.loads(row["pool"]) if row.get("pool") else None
    return cameras, workers


def read_refused(path: Path) -> list[dict[str, Any]]:
    """Failed handshakes per daemon and socket ([] from a status.db written before they were kept),
    each with ``peers``: [{"peer": IP address, "key": key fingerprint or "-", "count": n}], most first
    (common.refusals; [] where none was named)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in db.execute("SELECT * FROM refused ORDER BY daemon, socket, reason")]
        for row in rows:
            row["peers"] = [{"peer": p, "key": k, "count": n} for p, k, n in json.loads(row.get("peers") or "[]")]
        return rows
    except sqlite3.OperationalError:
        return []  # no such table
    finally:
        db.close()


def read_sink(path: Path, now: float | None = None) -> dict[str, Any] | None:
    """The sink's own row (None from a status.db written before it had one), with ``age_s`` (since
    its last write) and ``stale`` (older than STALE_AFTER_S: the sink is not running, or cannot write)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        row = db.execute("SELECT * FROM sink WHERE name = 'sink'").fetchone()
    except sqlite3.OperationalError:
        row = None  # no such table
    finally:
        db.close()
    if row is None:
        return None
    out = dict(row)
    out["write_errors"] = json.loads(out["write_errors"] or "{}")
    out["age_s"] = round(max(0.0, (time.time() if now is None else now) - (out["updated_ts"] or 0.0)), 1)
    out["stale"] = out["age_s"] > STALE_AFTER_S
    return out
