"""The sink's record of each camera and worker, and of itself: ``DIR/status.db``, which ``camwire status`` reads.

SQLite in WAL mode, so a reader never blocks the sink; the WAL is checkpointed after each write
so it stays a few pages long and is reused in place (a full disk does not stop status updates
that need no new pages). Written every FLUSH_S (never per frame). Tables:

- ``cameras``: ``state``, ``reason``, ``covered``, ``last_frame_ts`` (capture time of the newest
  result, s), ``last_status_ts``, ``last_error`` (the extractor's latest), ``reconnects``,
  ``attempts`` (failed rounds since the last frame), ``fps_in`` (frames the extractor decodes a
  second), ``fps_used`` (results the sink gets a second), ``results``, ``updated_ts``. ``state``:

  - ``connecting``, ``online``, ``offline`` (``reason`` why), ``failed`` (the source cannot work as
    configured; ``reason`` says why), ``stale`` (a polled feed that stopped changing; ``reason``
    says for how many polls), ``ended`` (a file read to its end), as the extractor says;
  - ``offline`` with reason ``extractor silent``: an online camera whose extractor sent nothing
    (no result, no status) for the sink's ``--silent-after`` (sink.events);
  - ``degraded``: online, but every result of the last FPS_WINDOW_S carried an ``error``
    (``reason`` is the newest: a detector or model failing on every frame).

  ``drops`` (JSON ``{"dropped/hwm": n, "skipped/no_motion": n}``): the frames its extractor did
  not send on, by why, as its latest status said.
  ``unserved_detectors`` (comma-separated) and ``unserved`` (frames): the detectors the camera
  wants that no worker serves now, as the ventilator last reported (classifier.dispatch); its
  state stays what the extractor says.
- ``workers``: as the ventilator last reported them (``detector``, ``credits``, ``in_flight``, ``dispatched``,
  ``completed``, ``leaving``, ``updated_ts``), and ``results``, the sink's own count of the
  results each worker sent (a worker the ventilator has not reported yet has only this).
- ``sink``: one row, rewritten at every flush: ``updated_ts`` (so a reader can tell a dead sink's
  stale data), ``started_ts``, ``stopped_ts`` (set at a clean exit), ``pid``, ``write_errors``
  (JSON: failed writes by what, sink.store.disk) and the latest one.
A write that fails (sqlite3.Error: a full disk) is counted under ``write_errors/status_db`` and
tried again at the next flush with everything still pending.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import msgspec

from camwire.sink.store.disk import WriteErrors
from camwire.sink.events import SILENT
from camwire.sink.store.status_db import FLUSH_S, SCHEMA
from camwire.common import database
from camwire.common import wire

FPS_WINDOW_S = 5.0
MAX_WORKERS = 4096  # as many as a ventilator reports; names beyond are not counted per worker
MAX_GONE = 10_000  # forgotten cameras whose rows wait for a flush that works; past it a stale row may stay




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
    attempts: int = 0
    fps_in: float = 0.0
    fps_used: float = 0.0
    results: int = 0
    updated_ts: float = 0.0
    unserved: int = 0  # frames counted while a detector it wants has no worker
    unserved_detectors: str | None = None  # those detectors, comma-separated
    drops: str | None = None  # JSON: the extractor's frames not sent on, by why (wire.Status.drops)


# a status.db from an older sink gains the columns added since (untyped, as SQLite allows)
ADDED = {"cameras": [(f.name, "") for f in fields(CameraRow)], "workers": [("detector", "TEXT")]}


@dataclass(slots=True)
class _Window:
    """Results of one camera since ``start`` (monotonic): for fps_used and ``degraded``."""

    start: float
    n: int = 0
    errors: int = 0
    error: str | None = None


@dataclass(slots=True)
class _Source:
    """What the camera's extractor last said, before silence and result errors are applied."""

    state: str = "connecting"
    reason: str | None = None
    silent: bool = False
    degraded: str | None = None  # the error every recent result carried


class StatusBook:
    """Kept in memory as messages come, written to ``path`` (None: memory only) by ``flush``."""

    def __init__(self, path: Path | None, errors: WriteErrors | None = None) -> None:
        self.path, self.errors = path, errors
        self.db: sqlite3.Connection | None = None
        self.cameras: dict[str, CameraRow] = {}
        self.workers: dict[str, dict[str, Any]] = {}  # name -> as the ventilator reported it
        self.workers_ts: float | None = None  # when it did
        self.worker_results: dict[str, int] = {}
        # failed CURVE handshakes: (daemon, socket, reason) -> (count, when reported)
        self.refused: dict[tuple[str, str, str], tuple[int, float]] = {}
        self._refused_dirty = False
        self.started_ts = time.time()
        self._source: dict[str, _Source] = {}
        self._window: dict[str, _Window] = {}
        self._dirty: set[str] = set()
        self._gone: set[str] = set()  # forgotten cameras: rows to delete at the next flush
        self._workers_dirty = False
        self._next_flush = 0.0
        if path is not None:
            self._connect()

    def _connect(self) -> bool:
        assert self.path is not None
        try:
            self.db = database.connect(self.path, SCHEMA, ADDED)
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
            return False
        return True

    def _failed(self, exc: BaseException) -> None:
        if self.errors is not None:
            self.errors("status_db", exc)

    # -- what comes in ------------------------------------------------------------------------

    def forget(self, camera: str) -> None:
        """A camera the sink let go (common.admission: idle, not in the config): its row leaves
        memory now and status.db at the next flush, so ``camwire status`` lists no invented names."""
        if self.cameras.pop(camera, None) is None:
            return
        self._source.pop(camera, None)
        self._window.pop(camera, None)
        self._dirty.discard(camera)
        if self.path is not None and len(self._gone) < MAX_GONE:
            self._gone.add(camera)

    def row(self, camera: str) -> CameraRow:
        if camera not in self.cameras:
            self._gone.discard(camera)
            self.cameras[camera] = CameraRow(camera)
            self._source[camera] = _Source()
            self._window[camera] = _Window(time.monotonic())
        self._dirty.add(camera)
        return self.cameras[camera]

    def on_status(self, msg: wire.Status) -> None:
        self.on_refused("extractor", msg.refused)
        row = self.row(msg.camera)
        src = self._source[msg.camera]
        src.state, src.silent = msg.state, False
        src.reason = (msg.reason or msg.last_error) if msg.state in ("offline", "failed", "stale") else None
        row.last_status_ts = msg.ts_ns / 1e9
        row.last_error = msg.last_error or row.last_error
        row.reconnects, row.attempts = msg.reconnects, msg.attempts
        row.fps_in = msg.fps_in
        row.drops = json.dumps(msg.drops, sort_keys=True) if msg.drops else row.drops
        self._derive(msg.camera)

    def on_eos(self, msg: wire.Eos) -> None:
        row = self.row(msg.camera)
        src = self._source[msg.camera]
        if src.state != "failed":  # a failed source keeps saying why; a file ended early says so
            src.state, src.reason = "ended", msg.reason
        row.fps_in = msg.fps_in or row.fps_in
        self._rate(msg.camera, time.monotonic(), partial=True)
        self._derive(msg.camera)

    def on_result(self, r: wire.Result, covered: bool) -> None:
        if r.worker is not None and (r.worker in self.worker_results or len(self.worker_results) < MAX_WORKERS):
            self.worker_results[r.worker] = self.worker_results.get(r.worker, 0) + 1
            self._workers_dirty = True
        row = self.row(r.camera)
        row.results += 1
        row.covered = int(covered)
        row.last_frame_ts = max(row.last_frame_ts or 0.0, r.ts_ns / 1e9)
        w = self._window[r.camera]
        w.n += 1
        if r.error:
            w.errors, w.error = w.errors + 1, r.error
        src = self._source[r.camera]
        if src.silent:  # its extractor is back
            src.silent = False
            if src.state in ("connecting", "offline"):
                src.state, src.reason = "online", None
            self._derive(r.camera)

    def on_silent(self, camera: str) -> None:
        self.row(camera)
        self._source[camera].silent = True
        self._derive(camera)

    def on_refused(self, daemon: str, refused: list[wire.Refused]) -> None:
        """A daemon's failed handshakes (counts since it started), as it last reported them."""
        now = time.time()
        for r in refused:
            key = (daemon, r.socket, r.reason)
            if key not in self.refused or self.refused[key][0] != r.count:
                self.refused[key] = (r.count, now)
                self._refused_dirty = True

    def on_workers(self, msg: wire.Workers) -> None:
        self.on_refused("ventilator", msg.refused)
        self.workers_ts = msg.ts_ns / 1e9
        self.workers = {w.name: msgspec.structs.asdict(w) for w in msg.workers}
        self._workers_dirty = True
        unserved: dict[str, dict[str, int]] = {}
        for u in msg.unserved:
            unserved.setdefault(u.camera, {})[u.detector] = u.frames
        for camera, row in self.cameras.items():  # only cameras known already: the report is bounded by them
            wanted = unserved.get(camera, {})
            frames, names = sum(wanted.values()), ", ".join(sorted(wanted)) or None
            if (row.unserved, row.unserved_detectors) != (frames, names):
                row.unserved, row.unserved_detectors = frames, names
                self._dirty.add(camera)

    def _derive(self, camera: str) -> None:
        """The state shown: silence first, then result errors, then what the extractor said."""
        row, src = self.cameras[camera], self._source[camera]
        if src.silent:
            row.state, row.reason = "offline", SILENT
        elif src.state == "online" and src.degraded:
            row.state, row.reason = "degraded", src.degraded
        else:
            row.state, row.reason = src.state, src.reason
        self._dirty.add(camera)

    def _rate(self, camera: str, now: float, partial: bool = False) -> None:
        """fps_used and ``degraded`` over the window; at the end of a stream, over what there is of it."""
        w = self._window[camera]
        if now - w.start >= FPS_WINDOW_S or (partial and w.n and now - w.start >= 0.5):
            src = self._source[camera]
            self.cameras[camera].fps_used = round(w.n / (now - w.start), 2)
            if w.n:  # a window with no results says nothing either way
                src.degraded = w.error if w.errors == w.n else None
            self._window[camera] = _Window(now)
            self._derive(camera)

    def up(self) -> dict[str, int]:
        """1 for each camera online (covered or not), 0 for every other state."""
        return {name: int(row.state == "online") for name, row in self.cameras.items()}

    # -- what goes out ------------------------------------------------------------------------

    def flush(self, force: bool = False, stopping: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_flush:
            return
        self._next_flush = now + FLUSH_S
        for camera in self._window:
            self._rate(camera, now)
        if self.path is None or (self.db is None and not self._connect()):
            return
        assert self.db is not None
        wall = time.time()
        try:
            with self.db:
                self.db.executemany("DELETE FROM cameras WHERE camera = ?", [(c,) for c in self._gone])
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
                             int(bool(w.get("leaving"))), self.workers_ts if w else None,
                             self.worker_results.get(name, 0), w.get("detector"))
                            for name, w in ((n, self.workers.get(n, {})) for n in names)]
                    self.db.executemany("INSERT INTO workers (name, credits, in_flight, dispatched, completed, "
                                        "leaving, updated_ts, results, detector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                        rows)
                if self._refused_dirty:
                    self.db.executemany("INSERT OR REPLACE INTO refused VALUES (?, ?, ?, ?, ?)",
                                        [(*key, n, ts) for key, (n, ts) in self.refused.items()])
                errors = self.errors
                self.db.execute("INSERT OR REPLACE INTO sink VALUES ('sink', ?, ?, ?, ?, ?, ?, ?)",
                                (os.getpid(), self.started_ts, wall, wall if stopping else None,
                                 json.dumps(errors.totals() if errors else {}, sort_keys=True),
                                 errors.last if errors else None, errors.last_ts if errors else None))
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # keep the WAL short, reused in place
        except sqlite3.Error as exc:
            self._failed(exc)  # everything stays dirty: written at the next flush that works
            return
        self._dirty.clear()
        self._gone.clear()
        self._workers_dirty = self._refused_dirty = False

    def close(self) -> None:
        self.flush(force=True, stopping=True)
        if self.db is not None:
            self.db.close()
            self.db = None
