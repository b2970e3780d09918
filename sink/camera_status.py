"""The sink's record of each camera and worker, and of itself: ``DIR/status.db``, which ``camwire status`` reads.

SQLite in WAL mode, so a reader never blocks the sink; the WAL is checkpointed after each write
so it stays a few pages long and is reused in place (a full disk does not stop status updates
that need no new pages). Written every FLUSH_S (never per frame). Tables:

- ``cameras``: ``state``, ``reason``, ``covered``, ``motion`` (1 while the motion events say
  motion, sink.motion_state), ``last_frame_ts`` (capture time of the newest
  result, s), ``last_status_ts``, ``last_error`` and ``last_error_ts`` (the extractor's latest
  error and when it last said it: current, so none while the extractor says the camera is
  online), ``past_error`` and ``past_error_ts`` (the error the camera came back from: what
  ``last_error`` was when it was last online again), ``reconnects``, ``attempts`` (failed rounds
  since the last frame), ``fps_in`` (frames the extractor decodes a second), ``fps_used``
  (results the sink gets a second), ``results``, ``updated_ts``. ``state``
is the camera's state as common.camera_state defines it, from the sink's live record
(sink.cameras): what the extractor said (``connecting``, ``online``, ``offline``, ``failed``,
``stale``; ``ended`` with its Eos), unless the sink found it ``offline`` with reason ``extractor
silent`` (sink.events: nothing for ``--silent-after``) or ``degraded`` (online, but every result
of the last FPS_WINDOW_S carried an ``error``; ``reason`` is the newest: a detector or model
failing on every frame). A covered camera stays ``online`` here, with ``covered`` 1.

  ``drops`` (JSON ``{"dropped/hwm": n, "skipped/no_motion": n}``): the frames its extractor did
  not send on, by why, as its latest status said; ``decoded`` and ``sent``: its frames decoded
  and pushed to the pool, likewise (0 from an older extractor).
  ``pool`` (JSON, wire.PoolAccount: ``{"received": n, "superseded": n, ..., "processed": n,
  "late": n, "waiting": n, "in_flight": n}``): its frames at the ventilator by final bucket, as
  the ventilator last reported (common.frame_account says what each bucket holds); NULL until then.
  ``unserved_detectors`` (comma-separated) and ``unserved`` (frames): the detectors the camera
  wants that no worker serves now, as the ventilator last reported (classifier.dispatch); its
  state stays what the extractor says.
  ``detectors`` and ``workers`` (comma-separated, sorted): the detectors and workers whose
  results for the camera came within SERVED_S of its newest result (wire.Result's ``detector``
  and ``worker``): what serves it now, or what served it last while no results come.
  ``switches`` (JSON ``{"detect": true, "record": false, "snapshots": true}``): the camera's
  switches as the sink keeps them (sink.switches); every one on until someone turns it off.
- ``workers``: as the ventilators last reported them (``detector``, ``credits``, ``in_flight``, ``dispatched``,
  ``completed``, ``leaving``, ``updated_ts``), a worker linked to several ventilators with its
  counts summed over them (each ventilator's latest report is kept, until it has been silent for
  REPORT_KEPT_S), and ``results``, the sink's own count of the results each worker sent (a worker
  no ventilator has reported yet has only this).
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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

import msgspec

from camwire.sink.cameras import LiveCamera, LiveCameras
from camwire.sink.store.disk import WriteErrors
from camwire.sink.store.status_db import FLUSH_S, SCHEMA
from camwire.sink.switches import Switches
from camwire.common import database
from camwire.common import wire
from camwire.common.camera_state import WITH_REASON

FPS_WINDOW_S = 5.0
MAX_WORKERS = 4096  # as many as a ventilator reports; names beyond are not counted per worker
MAX_GONE = 10_000  # forgotten cameras whose rows wait for a flush that works; past it a stale row may stay
SERVED_S = 60.0  # a detector or worker is listed as serving a camera while its results are this recent
MAX_SERVED = 64  # names kept per camera (detectors and workers each); the oldest goes first
REPORT_KEPT_S = 30.0  # a ventilator not heard from this long (gone) leaves the workers table (it reports every 2 s)
MAX_VENTILATORS = 256  # reports kept at once; the oldest goes first
SUMMED = ("credits", "in_flight", "dispatched", "completed", "lost")  # a worker's, over its ventilators




@dataclass(slots=True)
class CameraRow:
    camera: str
    state: str = "connecting"
    reason: str | None = None
    covered: int = 0
    motion: int = 0
    last_frame_ts: float | None = None
    last_status_ts: float | None = None
    last_error: str | None = None
    last_error_ts: float | None = None  # when the extractor last said it
    past_error: str | None = None  # the error it came back from (last_error when it was online again)
    past_error_ts: float | None = None
    reconnects: int = 0
    attempts: int = 0
    fps_in: float = 0.0
    fps_used: float = 0.0
    results: int = 0
    updated_ts: float = 0.0
    unserved: int = 0  # frames counted while a detector it wants has no worker
    unserved_detectors: str | None = None  # those detectors, comma-separated
    drops: str | None = None  # JSON: the extractor's frames not sent on, by why (wire.Status.drops)
    detectors: str | None = None  # those that served its recent results, comma-separated
    workers: str | None = None  # likewise the workers
    switches: str | None = None  # JSON: its switches, {"detect": true, ...} (sink.switches)
    decoded: int = 0  # frames its extractor decoded (wire.Status.decoded)
    sent: int = 0  # frames its extractor pushed to the pool
    pool: str | None = None  # JSON: its frames at the ventilator by final bucket (wire.PoolAccount)


# a status.db from an older sink gains the columns added since (untyped, as SQLite allows)
ADDED = {"cameras": [(f.name, "") for f in fields(CameraRow)], "workers": [("detector", "TEXT")],
         "refused": [("peers", "TEXT")]}


@dataclass(slots=True)
class _Window:
    """Results of one camera since ``start`` (monotonic): for fps_used and ``degraded``."""

    start: float
    n: int = 0
    errors: int = 0
    error: str | None = None


@dataclass(slots=True)
class _Served:
    """Who served a camera's results: name -> the result's capture time (s), newest kept."""

    detectors: dict[str, float] = field(default_factory=dict)
    workers: dict[str, float] = field(default_factory=dict)

    def add(self, detector: str | None, worker: str | None, ts: float) -> None:
        for names, name in ((self.detectors, detector), (self.workers, worker)):
            if name is None:
                continue
            if name not in names and len(names) >= MAX_SERVED:
                del names[min(names, key=names.__getitem__)]
            names[name] = max(names.get(name, ts), ts)

    def shown(self) -> tuple[str | None, str | None]:
        """The names within SERVED_S of the newest result, comma-separated (the rest forgotten)."""
        out: list[str | None] = []
        for names in (self.detectors, self.workers):
            if names:
                newest = max(names.values())
                for name in [n for n, ts in names.items() if ts < newest - SERVED_S]:
                    del names[name]
            out.append(", ".join(sorted(names)) or None)
        return out[0], out[1]


@dataclass(slots=True)
class StatusPart:
    """What status.db keeps of a camera besides its live record: the row as last written, the
    window, who served it."""

    row: CameraRow
    window: _Window
    served: _Served = field(default_factory=_Served)


def merged(reports: Iterable[tuple[float, dict[str, dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Several ventilators' reports (each its time and its workers) as one table: a worker linked
    to several (classifier.links) has its credits, frames in flight, dispatched, done and lost
    summed over them, is leaving if any of them says so, and ``reported_ts`` is its newest."""
    out: dict[str, dict[str, Any]] = {}
    for ts, report in reports:
        for name, worker in report.items():
            if (have := out.get(name)) is None:
                out[name] = {**worker, "reported_ts": ts}
                continue
            for key in SUMMED:
                have[key] = (have.get(key) or 0) + (worker.get(key) or 0)
            have["leaving"] = bool(have.get("leaving") or worker.get("leaving"))
            have["detector"] = have.get("detector") or worker.get("detector")
            have["reported_ts"] = max(have["reported_ts"], ts)
    return out


class StatusBook:
    """Kept in memory as messages come, written to ``path`` (None: memory only) by ``flush``.
    ``cameras``: the sink's live records (sink.cameras), whose state, covered and motion the rows show;
    ``switches``: the sink's switches (sink.switches), shown too."""

    def __init__(self, path: Path | None, errors: WriteErrors | None = None, cameras: LiveCameras | None = None,
                 switches: Switches | None = None) -> None:
        self.path, self.errors = path, errors
        self.switches = switches
        self.db: sqlite3.Connection | None = None
        self.cameras = cameras if cameras is not None else LiveCameras()
        self.workers: dict[str, dict[str, Any]] = {}  # name -> as its ventilators reported it, summed
        # each ventilator's latest report (classifier.ventilator's name): when it came (monotonic),
        # its time, its workers by name
        self.reports: dict[str, tuple[float, float, dict[str, dict[str, Any]]]] = {}
        self.worker_results: dict[str, int] = {}
        # failed CURVE handshakes: (daemon, socket, reason) -> (count, when reported)
        self.refused: dict[tuple[str, str, str], tuple[int, float, str]] = {}  # -> count, when, peers (JSON)
        self._refused_dirty = False
        self.started_ts = time.time()
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
        status.db at the next flush, so ``camwire status`` lists no invented names (the sink
        drops its live record)."""
        live = self.cameras.get(camera)
        if live is None or live.parts.pop(StatusPart, None) is None:
            return
        self._dirty.discard(camera)
        if self.path is not None and len(self._gone) < MAX_GONE:
            self._gone.add(camera)

    def part(self, camera: str) -> tuple[LiveCamera, StatusPart]:
        """The camera's live record and its row, made when first met; the row will be written."""
        live = self.cameras.at(camera)
        part = live.part(StatusPart)
        if part is None:
            self._gone.discard(camera)
            part = live.attach(StatusPart(CameraRow(camera), _Window(time.monotonic())))
        self._dirty.add(camera)
        return live, part

    def row(self, camera: str) -> CameraRow:
        return self.part(camera)[1].row

    def on_status(self, msg: wire.Status) -> None:
        self.on_refused("extractor", msg.refused)
        live, part = self.part(msg.camera)
        live.reported = msg.state
        live.reported_reason = (msg.reason or msg.last_error) if msg.state in WITH_REASON else None
        row = part.row
        row.last_status_ts = ts = msg.ts_ns / 1e9
        if msg.state == "online":  # back: the error it had is past (an extractor online sends none)
            if row.last_error is not None:
                row.past_error, row.past_error_ts = row.last_error, row.last_error_ts
            if msg.last_error and msg.last_error != row.past_error:  # one said while online (a feed throttled)
                row.past_error, row.past_error_ts = msg.last_error, ts
            row.last_error = row.last_error_ts = None
        elif msg.last_error:
            row.last_error, row.last_error_ts = msg.last_error, ts
        row.reconnects, row.attempts = msg.reconnects, msg.attempts
        row.fps_in = msg.fps_in
        row.drops = json.dumps(msg.drops, sort_keys=True) if msg.drops else row.drops
        row.decoded, row.sent = msg.decoded, msg.sent

    def on_eos(self, msg: wire.Eos) -> None:
        live, part = self.part(msg.camera)
        live.move("eos", msg.reason)  # a failed source keeps saying why; a file ended early says so
        part.row.fps_in = msg.fps_in or part.row.fps_in
        self._rate(msg.camera, time.monotonic(), partial=True)

    def on_result(self, r: wire.Result) -> None:
        """After sink.events took it: the record's ``covered`` and ``silent`` are as it left them."""
        if r.worker is not None and (r.worker in self.worker_results or len(self.worker_results) < MAX_WORKERS):
            self.worker_results[r.worker] = self.worker_results.get(r.worker, 0) + 1
            self._workers_dirty = True
        _live, part = self.part(r.camera)
        row = part.row
        row.results += 1
        row.last_frame_ts = max(row.last_frame_ts or 0.0, r.ts_ns / 1e9)
        part.served.add(r.detector, r.worker, r.ts_ns / 1e9)
        w = part.window
        w.n += 1
        if r.error:
            w.errors, w.error = w.errors + 1, r.error

    def on_refused(self, daemon: str, refused: list[wire.Refused]) -> None:
        """A daemon's failed handshakes (counts since it started), as it last reported them."""
        now = time.time()
        grouped: dict[tuple[str, str, str], tuple[int, list[list[Any]]]] = {}
        for r in refused:  # a row per peer named (common.refusals): one status row per socket and reason
            key = (daemon, r.socket, r.reason)
            n, peers = grouped.get(key, (0, []))
            if r.peer is not None:
                peers.append([r.peer, r.key, r.count])
            grouped[key] = (n + r.count, peers)
        for key, (n, peers) in grouped.items():
            if key not in self.refused or self.refused[key][0] != n:
                peers.sort(key=lambda p: -p[2])
                self.refused[key] = (n, now, json.dumps(peers[:32]))
                self._refused_dirty = True

    def on_workers(self, msg: wire.Workers, now: float | None = None) -> None:
        """A ventilator's report (``now``: monotonic, when it came)."""
        self.on_refused("ventilator", msg.refused)
        now = time.monotonic() if now is None else now
        self.reports.pop(msg.ventilator or "", None)  # re-added last: the dict's order is the reports' age
        self.reports[msg.ventilator or ""] = (now, msg.ts_ns / 1e9, {w.name: msgspec.structs.asdict(w)
                                                                     for w in msg.workers})
        while len(self.reports) > MAX_VENTILATORS:
            del self.reports[next(iter(self.reports))]
        self._merge(now)
        unserved: dict[str, dict[str, int]] = {}
        for u in msg.unserved:
            unserved.setdefault(u.camera, {})[u.detector] = u.frames
        for camera, live in self.cameras.items():  # only cameras known already: the report is bounded by them
            if (part := live.part(StatusPart)) is None:
                continue
            account = msg.accounts.get(camera)
            if account is None:
                # a camera this ventilator does not know (another ventilator's, forgotten, or a
                # restarted ventilator's) keeps its last account and unserved count
                continue
            wanted = unserved.get(camera, {})
            frames, names = sum(wanted.values()), ", ".join(sorted(wanted)) or None
            pool = msgspec.json.encode(account).decode()
            if (part.row.unserved, part.row.unserved_detectors, part.row.pool) != (frames, names, pool):
                part.row.unserved, part.row.unserved_detectors, part.row.pool = frames, names, pool
                self._dirty.add(camera)

    def _show(self, live: LiveCamera, part: StatusPart) -> None:
        """The row says what the live record says now (its state, silence and result errors
        applied: LiveCamera.state), and who served it; written at the next flush if that changed."""
        row = part.row
        switches = json.dumps(self.switches.shown(live.name)) if self.switches is not None else None
        shown = (live.state, live.reason, int(live.covered), int(live.motion), *part.served.shown(), switches)
        if (row.state, row.reason, row.covered, row.motion, row.detectors, row.workers, row.switches) != shown:
            row.state, row.reason, row.covered, row.motion, row.detectors, row.workers, row.switches = shown
            self._dirty.add(live.name)

    def _rate(self, camera: str, now: float, partial: bool = False) -> None:
        """fps_used and ``degraded`` over the window; at the end of a stream, over what there is of it."""
        live = self.cameras[camera]
        part = live.part(StatusPart)
        assert part is not None
        w = part.window
        if now - w.start >= FPS_WINDOW_S or (partial and w.n and now - w.start >= 0.5):
            part.row.fps_used = round(w.n / (now - w.start), 2)
            if w.n:  # a window with no results says nothing either way
                live.degraded = w.error if w.errors == w.n else None
            part.window = _Window(now)
            self._dirty.add(camera)
        self._show(live, part)

    def frames(self) -> dict[tuple[str, str], int]:
        """(camera, bucket) -> frames, for the metrics: the extractor's ``decoded`` and ``sent``, its
        drops by why (``dropped/hwm``) and the pool's buckets (common.frame_account), as last reported."""
        out: dict[tuple[str, str], int] = {}
        for name, live in self.cameras.items():
            if (part := live.part(StatusPart)) is None:
                continue
            row = part.row
            out[(name, "decoded")], out[(name, "sent")] = row.decoded, row.sent
            for why, n in (json.loads(row.drops) if row.drops else {}).items():
                out[(name, why)] = n
            for bucket, n in (json.loads(row.pool) if row.pool else {}).items():
                if bucket != "received":  # the same frames as ``sent``, less those on their way
                    out[(name, bucket)] = n
        return out

    def up(self) -> dict[str, int]:
        """1 for each camera online (covered or not), 0 for every other state."""
        return {name: int(live.state == "online") for name, live in self.cameras.items()
                if live.part(StatusPart) is not None}

    # -- what goes out ------------------------------------------------------------------------

    def _merge(self, now: float) -> None:
        """The workers table again from the reports of ventilators heard within REPORT_KEPT_S."""
        gone = [name for name, (at, _, _) in self.reports.items() if now - at > REPORT_KEPT_S]
        for name in gone:
            del self.reports[name]
        self.workers = merged((ts, report) for _, ts, report in self.reports.values())
        self._workers_dirty = True

    def flush(self, force: bool = False, stopping: bool = False, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if not force and now < self._next_flush:
            return
        self._next_flush = now + FLUSH_S
        if any(now - at > REPORT_KEPT_S for at, _, _ in self.reports.values()):
            self._merge(now)  # a ventilator gone silent leaves the table though no other reports
        for camera, live in self.cameras.items():
            if live.part(StatusPart) is not None:
                self._rate(camera, now)
        if self.path is None or (self.db is None and not self._connect()):
            return
        assert self.db is not None
        wall = time.time()
        try:
            with self.db:
                self.db.executemany("DELETE FROM cameras WHERE camera = ?", [(c,) for c in self._gone])
                for camera in self._dirty:
                    row = self.cameras[camera].parts[StatusPart].row
                    row.updated_ts = wall
                    values = asdict(row)
                    self.db.execute(f"INSERT OR REPLACE INTO cameras ({', '.join(values)}) "
                                    f"VALUES ({', '.join('?' * len(values))})", list(values.values()))
                if self._workers_dirty:
                    self.db.execute("DELETE FROM workers")
                    names = sorted({*self.workers, *self.worker_results})
                    rows = [(name, w.get("credits"), w.get("in_flight"), w.get("dispatched"), w.get("completed"),
                             int(bool(w.get("leaving"))), w.get("reported_ts"),
                             self.worker_results.get(name, 0), w.get("detector"))
                            for name, w in ((n, self.workers.get(n, {})) for n in names)]
                    self.db.executemany("INSERT INTO workers (name, credits, in_flight, dispatched, completed, "
                                        "leaving, updated_ts, results, detector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                        rows)
                if self._refused_dirty:
                    self.db.executemany("INSERT OR REPLACE INTO refused (daemon, socket, reason, count, updated_ts, "
                                        "peers) VALUES (?, ?, ?, ?, ?, ?)",
                                        [(*key, *row) for key, row in self.refused.items()])
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
