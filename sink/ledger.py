"""What the sink has told, kept in ``DIR/ledger.db`` so that a restarted sink neither tells it again
nor reuses an id (issue 21: a sink killed and started again re-emitted the extractor's repeated
motion state under the same id).

A file of its own, not status.db: ``told_ids`` grows, and a database that must grow on a full
disk can no longer checkpoint its WAL, which would stop status.db's updates too (they rewrite
their own pages, and so go on while the disk is full). Two tables:

- ``told``: per camera and ``what``, the state the events have told so far, as JSON
  (``motion``: sink.motion_state; ``camera``: online, covered, failed, silent, sink.events;
  ``recording``: the recorder's pause, sink.recording_state). A state machine recalls its
  camera's row when it first meets the camera, so a repeat of a state already told is known for one.
- ``told_ids``: ``(camera, type, ts_ns) -> n``, the last ``n`` given (sink.events.EventIds),
  the newest MAX_IDS rows loaded at start: two events at one nanosecond get different ids even
  when a restart falls between them (two detectors' results for one frame, one before, one after).

The state machines only ``keep`` (in memory); :meth:`Ledger.commit` writes what is pending, and
the sink calls it before any event leaves (sink.daemon ``emit``): a state is on disk before
the events it made are anywhere, so a SIGKILL can lose an event, never repeat one. WAL with
synchronous=NORMAL: a commit is a write to the page cache, no fsync (30-60 us an event on an
SSD), and it survives a killed process (not a power cut); the WAL is checkpointed by SQLite
every 1000 pages and at each :meth:`prune` (a checkpoint fsyncs: 2 ms, so never per event).
States and ids are written in two transactions, so an id that cannot be written does not hold
back the states. A failed write (a full disk, a lock held elsewhere past LOCK_WAIT_S) is counted
under ``write_errors/ledger`` and tried again at the next commit; events still go out. Without
``--data-dir`` (``path`` None) the ledger keeps nothing and a restart starts from scratch.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import TypeVar

import msgspec

from camwire.sink.store.disk import WriteErrors
from camwire.common import database

FILE = "ledger.db"  # in the sink's --data-dir
MAX_IDS = 65536  # newest (camera, type, ns) keys kept: as sink.events keeps in memory
MAX_ROWS = 100_000  # told rows kept, the least recently changed deleted first (invented names)
MAX_PENDING_IDS = 100_000  # while the disk refuses: the oldest pending ids are given up past this
LOCK_WAIT_S = 0.5  # the sink's loop waits no longer for a lock someone else holds (sqlite3 by hand)

SCHEMA = """
CREATE TABLE IF NOT EXISTS told (
    camera TEXT NOT NULL, what TEXT NOT NULL, state TEXT NOT NULL, updated_ts REAL NOT NULL,
    PRIMARY KEY (camera, what));
CREATE TABLE IF NOT EXISTS told_ids (
    camera TEXT NOT NULL, type TEXT NOT NULL, ts_ns INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (camera, type, ts_ns));
CREATE INDEX IF NOT EXISTS told_ids_ts ON told_ids (ts_ns);
"""

T = TypeVar("T")
IdKey = tuple[str, str, int]  # (camera, type, ts_ns)


class Ledger:
    def __init__(self, path: Path | None, errors: WriteErrors | None = None) -> None:
        self.path, self.errors = path, errors
        self.db: sqlite3.Connection | None = None
        self._states: dict[tuple[str, str], bytes] = {}  # pending: (camera, what) -> JSON
        self._ids: dict[IdKey, int] = {}  # pending
        if path is not None:
            self._connect()

    def _connect(self) -> bool:
        assert self.path is not None
        try:
            self.db = database.connect(self.path, SCHEMA, timeout=LOCK_WAIT_S)
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
            return False
        return True

    def _failed(self, exc: BaseException) -> None:
        if self.errors is not None:
            self.errors("ledger", exc)

    # -- read back ---------------------------------------------------------------------------

    def recall(self, camera: str, what: str, kind: type[T]) -> T | None:
        """The state last kept for ``camera``, as ``kind`` (a msgspec Struct); None if none, or if
        what is stored does not decode as one (an older or damaged row: start afresh)."""
        raw = self._states.get((camera, what))
        if raw is None and self.db is not None:
            try:
                row = self.db.execute("SELECT state FROM told WHERE camera = ? AND what = ?", (camera, what)).fetchone()
            except sqlite3.Error as exc:
                self._failed(exc)
                row = None
            raw = row[0] if row else None
        if raw is None:
            return None
        try:
            return msgspec.json.decode(raw, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    def recent_ids(self) -> dict[IdKey, int]:
        """The newest MAX_IDS ``(camera, type, ts_ns) -> n`` given by this sink, before and since its restarts."""
        if self.db is None:
            return {}
        try:
            rows = self.db.execute("SELECT camera, type, ts_ns, n FROM told_ids ORDER BY ts_ns DESC LIMIT ?",
                                   (MAX_IDS,)).fetchall()
        except sqlite3.Error as exc:
            self._failed(exc)
            return {}
        return {(camera, etype, ts_ns): n for camera, etype, ts_ns, n in rows}

    # -- keep --------------------------------------------------------------------------------

    def keep(self, camera: str, what: str, state: msgspec.Struct) -> None:
        """``state`` is what the events about to leave have told: written at the next :meth:`commit`."""
        if self.path is not None:
            self._states[(camera, what)] = msgspec.json.encode(state)

    def keep_id(self, camera: str, etype: str, ts_ns: int, n: int) -> None:
        if self.path is None:
            return
        self._ids[(camera, etype, ts_ns)] = n
        if len(self._ids) > MAX_PENDING_IDS:  # the disk has refused for long: the oldest go first
            del self._ids[next(iter(self._ids))]

    def commit(self) -> None:
        """Write what is pending; what fails stays pending (counted)."""
        if not (self._states or self._ids) or (self.db is None and not (self.path and self._connect())):
            return
        assert self.db is not None
        now = time.time()
        if self._states and self._write("INSERT OR REPLACE INTO told VALUES (?, ?, ?, ?)",
                                        [(camera, what, state.decode(), now)
                                         for (camera, what), state in self._states.items()]):
            self._states.clear()
        if self._ids and self._write("INSERT OR REPLACE INTO told_ids VALUES (?, ?, ?, ?)",
                                     [(*key, n) for key, n in self._ids.items()]):
            self._ids.clear()

    def _write(self, sql: str, rows: list[tuple]) -> bool:
        assert self.db is not None
        try:
            with self.db:
                self.db.executemany(sql, rows)
        except sqlite3.Error as exc:
            self._failed(exc)
            return False
        return True

    def prune(self) -> None:
        """Bound the tables: the newest MAX_IDS ids, the MAX_ROWS most recently changed states."""
        if self.db is None:
            return
        try:
            with self.db:
                self.db.execute("DELETE FROM told_ids WHERE ts_ns < (SELECT ts_ns FROM told_ids "
                                "ORDER BY ts_ns DESC LIMIT 1 OFFSET ?)", (MAX_IDS - 1,))
                self.db.execute("DELETE FROM told WHERE updated_ts < (SELECT updated_ts FROM told "
                                "ORDER BY updated_ts DESC LIMIT 1 OFFSET ?)", (MAX_ROWS - 1,))
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the WAL back to its start, reused in place
        except sqlite3.Error as exc:
            self._failed(exc)

    def close(self) -> None:
        self.commit()
        if self.db is not None:
            self.db.close()
            self.db = None


def read_told(path: Path, what: str) -> list[dict]:
    """Every camera's ``what`` state as last kept in ``path`` (ledger.db), read-only: ``[{"camera":
    ..., "updated_ts": ..., **state}]``; [] where there is no ledger (yet)."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT camera, state, updated_ts FROM told WHERE what = ? ORDER BY camera",
                          (what,)).fetchall()
    except sqlite3.OperationalError:
        return []  # no such table
    finally:
        db.close()
    out = []
    for camera, state, updated_ts in rows:
        try:
            fields = msgspec.json.decode(state)
        except msgspec.DecodeError:
            continue
        if isinstance(fields, dict):
            out.append({"camera": camera, "updated_ts": updated_ts, **fields})
    return out
