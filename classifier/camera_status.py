"""The sink's record of each camera and worker: ``DIR/status.db``, which ``camwire status`` reads.

SQLite in WAL mode, so a reader never blocks the sink. Rows are rewritten at most once every
FLUSH_S (never per frame). Tables:

- ``cameras``: ``state`` (connecting | online | offline | ended, for a file read to its end),
  ``reason`` (why offline), ``covered``, ``last_frame_ts`` (capture time of the newest result,
  s), ``last_status_ts``, ``last_error``, ``reconnects``, ``fps_in`` (frames the extractor
  decodes a second), ``fps_used`` (results the sink gets a second), ``results``, ``updated_ts``;
- ``workers``: as the ventilator last reported them (``credits``, ``in_flight``, ``dispatched``,
  ``completed``, ``leaving``, ``updated_ts``), and ``results``, the sink's own count of the
  results each worker sent (a worker the ventilator has not reported yet has only this).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FLUSH_S = 1.0
FPS_WINDOW_S = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS cameras (
    camera TEXT PRIMARY KEY, state TEXT, reason TEXT, covered INTEGER, last_frame_ts REAL,
    last_status_ts REAL, last_error TEXT, reconnects INTEGER, fps_in REAL, fps_used REAL,
    results INTEGER, updated_ts REAL);
CREATE TABLE IF NOT EXISTS workers (
    name TEXT PRIMARY KEY, credits INTEGER, in_flight INTEGER, dispatched INTEGER, completed INTEGER,
    leaving INTEGER, updated_ts REAL, results INTEGER);
"""


@dataclass(slots=True)
class CameraRow:
    camera: str
    state: str = "connecting"
    reason: str | None = None
    covered: int = 0
    last_frame_ts: float | None = None
    last_status_ts: float | None = None
    last_error: str | None = None
    reconnects: int = 0
    fps_in: float = 0.0
    fps_used: float = 0.0
    results: int = 0
    updated_ts: float = 0.0


class StatusBook:
    """Kept in memory as messages come, written to ``path`` by ``flush``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self.cameras: dict[str, CameraRow] = {}
        self.workers: dict[str, dict[str, Any]] = {}  # name -> as the ventilator reported it
        self.workers_ts: float | None = None  # when it did
        self.worker_results: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._workers_dirty = False
        self._window: dict[str, tuple[float, int]] = {}  # camera -> (window start, results since)
        self._next_flush = 0.0

    def row(self, camera: str) -> CameraRow:
        if camera not in self.cameras:
            self.cameras[camera] = CameraRow(camera)
            self._window[camera] = (time.monotonic(), 0)
        self._dirty.add(camera)
        return self.cameras[camera]

    def on_status(self, msg: dict[str, Any]) -> None:
        row = self.row(msg["camera"])
        row.state = str(msg.get("state", "offline"))
        row.reason = msg.get("reason") if row.state == "offline" else None
        row.last_status_ts = msg.get("ts_ns", time.time_ns()) / 1e9
        row.last_error = msg.get("last_error", row.last_error)
        row.reconnects = int(msg.get("reconnects", row.reconnects) or 0)
        row.fps_in = float(msg.get("fps_in", row.fps_in) or 0.0)

    def on_eos(self, msg: dict[str, Any]) -> None:
        row = self.row(msg["camera"])
        row.state, row.reason = "ended", None
        row.fps_in = float(msg.get("fps_in") or row.fps_in)
        self._rate(msg["camera"], time.monotonic(), partial=True)

    def _rate(self, camera: str, now: float, partial: bool = False) -> None:
        """fps_used over the window; at the end of a stream, over what there is of it."""
        start, n = self._window[camera]
        if now - start >= FPS_WINDOW_S or (partial and n and now - start >= 0.5):
            self.cameras[camera].fps_used = round(n / (now - start), 2)
            self._window[camera] = (now, 0)
            self._dirty.add(camera)

    def on_result(self, camera: str, ts_ns: int, covered: bool, worker: str | None = None) -> None:
        if worker is not None:
            self.worker_results[worker] = self.worker_results.get(worker, 0) + 1
            self._workers_dirty = True
        row = self.row(camera)
        row.results += 1
        row.covered = int(covered)
        row.last_frame_ts = max(row.last_frame_ts or 0.0, ts_ns / 1e9)
        start, n = self._window[camera]
        self._window[camera] = (start, n + 1)

    def on_workers(self, msg: dict[str, Any]) -> None:
        self.workers_ts = msg.get("ts_ns", time.time_ns()) / 1e9
        self.workers = {str(w["name"]): w for w in msg.get("workers", []) if isinstance(w, dict) and "name" in w}
        self._workers_dirty = True

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_flush:
            return
        self._next_flush = now + FLUSH_S
        for camera in self._window:
            self._rate(camera, now)
        if not self._dirty and not self._workers_dirty:
            return
        wall = time.time()
        with self.db:
            for camera in self._dirty:
                row = self.cameras[camera]
                row.updated_ts = wall
                values = asdict(row)
                self.db.execute(f"INSERT OR REPLACE INTO cameras ({', '.join(values)}) "
                                f"VALUES ({', '.join('?' * len(values))})", list(values.values()))
            if self._workers_dirty:
                self.db.execute("DELETE FROM workers")
                names = sorted({*self.workers, *self.worker_results})
                rows = [(name, w.get("credits"), w.get("in_flight"), w.get("dispatched"), w.get("completed"),
                         int(bool(w.get("leaving"))), self.workers_ts if w else None, self.worker_results.get(name, 0))
                        for name, w in ((n, self.workers.get(n, {})) for n in names)]
                self.db.executemany("INSERT INTO workers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self._dirty.clear()
        self._workers_dirty = False

    def close(self) -> None:
        self.flush(force=True)
        self.db.close()


def read_status(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Cameras and workers as last written to ``path``, read without disturbing the sink."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        cameras = [dict(r) for r in db.execute("SELECT * FROM cameras ORDER BY camera")]
        workers = [dict(r) for r in db.execute("SELECT * FROM workers ORDER BY name")]
    finally:
        db.close()
    return cameras, workers
