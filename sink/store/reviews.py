"""``DATA_DIR/reviews.db``: which tracked objects were marked reviewed in the console, and by whom.

The console sends common.wire ``Reviewed`` to the sink's PULL (web.sink_link); the sink writes
one row per (object, user) here: ``user`` is the console user the mark is for, ``''`` a mark
for everyone. Unmarking deletes the row. The console reads the file read-only
(:func:`read_reviewed`, WAL: it never blocks the sink) to answer its review page.

A file of its own, not status.db: it grows with what is marked, and a database that must grow
on a full disk stops checkpointing its WAL. It is bounded: past MAX_ROWS the oldest marks go (by
then the console's events index, which keeps 200,000 rows, no longer holds their objects).
A failed write (a full or read-only disk) is counted under ``write_errors/reviews`` and the mark
is lost; the sink goes on. Without ``--data-dir`` nothing is kept.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Iterable

from camwire.common import database, wire
from camwire.sink.store.disk import WriteErrors

FILE = "reviews.db"  # in the sink's --data-dir
MAX_ROWS = 200_000  # marks kept, the oldest deleted first: as many as web.events_index holds rows
LOCK_WAIT_S = 0.5  # the sink's loop waits no longer for a lock someone else holds
CHUNK = 500  # ids per IN (...) query: under SQLite's variable limit

SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    object_id TEXT NOT NULL, user TEXT NOT NULL, reviewed_ts REAL NOT NULL, by TEXT NOT NULL,
    PRIMARY KEY (object_id, user)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reviews_ts ON reviews (reviewed_ts);
"""


class Reviews:
    """The sink's writer; ``path`` None keeps nothing."""

    def __init__(self, path: Path | None, errors: WriteErrors | None = None, max_rows: int = MAX_ROWS) -> None:
        self.path, self.errors, self.max_rows = path, errors, max_rows
        self.db: sqlite3.Connection | None = None
        self.rows = 0
        if path is not None:
            self._connect()

    def _connect(self) -> bool:
        assert self.path is not None
        try:
            self.db = database.connect(self.path, SCHEMA, timeout=LOCK_WAIT_S)
            self.rows = self.db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
            return False
        return True

    def _failed(self, exc: BaseException) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None  # opened again at the next mark: the disk may have room by then
        if self.errors is not None:
            self.errors("reviews", exc)

    @property
    def keeping(self) -> bool:
        return self.path is not None

    def mark(self, msg: wire.Reviewed, now: float | None = None) -> bool:
        """Keep (or, ``reviewed`` false, take back) the marks of ``msg``; False when they could not
        be written (counted), or there is no file to write them to."""
        if self.path is None or (self.db is None and not self._connect()):
            return False
        assert self.db is not None
        user = msg.user or ""
        ids = list(dict.fromkeys(msg.object_ids))
        try:
            with self.db:  # one transaction: all of a message's marks, or none
                if msg.reviewed:
                    ts = time.time() if now is None else now
                    self.db.executemany("INSERT OR REPLACE INTO reviews VALUES (?, ?, ?, ?)",
                                        [(oid, user, ts, msg.by) for oid in ids])
                else:
                    self.db.executemany("DELETE FROM reviews WHERE object_id = ? AND user = ?",
                                        [(oid, user) for oid in ids])
                self.rows = self.db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]
                if self.rows > self.max_rows:
                    self.db.execute("DELETE FROM reviews WHERE (object_id, user) IN (SELECT object_id, user FROM "
                                    "reviews ORDER BY reviewed_ts LIMIT ?)", (self.rows - self.max_rows,))
                    self.rows = self.max_rows
        except sqlite3.Error as exc:
            self._failed(exc)
            return False
        return True

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def read_reviewed(path: Path, object_ids: Iterable[str], user: str | None = None) -> set[str]:
    """Which of ``object_ids`` are marked reviewed, for everyone or for ``user``: read-only, so
    it never blocks the sink; nothing when the file is not there yet."""
    ids = list(dict.fromkeys(object_ids))
    if not ids or not path.exists():
        return set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out: set[str] = set()
        for i in range(0, len(ids), CHUNK):
            part = ids[i: i + CHUNK]
            marks = ",".join("?" * len(part))
            out.update(r[0] for r in db.execute(
                f"SELECT object_id FROM reviews WHERE object_id IN ({marks}) AND user IN ('', ?)", (*part, user or "")))
        return out
    except sqlite3.OperationalError:
        return set()  # no such table: the sink has not made it yet
    finally:
        db.close()
