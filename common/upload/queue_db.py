"""``uploads.db``, the upload queue (:class:`UploadQueue`): each upload's event and its objects
(parts, then the manifest), their state, tries and next try, in SQLite; what a restart resumes."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from camwire.common import database

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, body TEXT NOT NULL, created REAL NOT NULL,
                                   state TEXT NOT NULL);   -- pending, uploaded (not told yet), told, failed
CREATE TABLE IF NOT EXISTS objects (event TEXT NOT NULL, part INTEGER NOT NULL, path TEXT, key TEXT NOT NULL,
                                    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                                    next_try REAL NOT NULL, error TEXT,
                                    PRIMARY KEY (event, part));  -- path NULL: the manifest, always last
CREATE INDEX IF NOT EXISTS due ON objects (state, next_try);
"""
# columns added since the first uploads.db (snapshots only): added to such a file at open
ADDED = (("content_type", "TEXT NOT NULL DEFAULT 'image/jpeg'"), ("remove", "INTEGER NOT NULL DEFAULT 0"))


class UploadQueue:
    """``uploads.db``: what is to go, what went, what failed. One connection, under a lock: the
    sink's thread adds (one transaction), the dispatcher thread takes and marks."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, timeout=5.0)
        database.prepare(self.db, SCHEMA, {"objects": ADDED})
        self.lock = threading.Lock()

    def add(self, upload: str, body: bytes, objects: list[tuple[str | None, str, str, bool]], now: float) -> bool:
        """One upload and its objects (``(local path or None for the manifest, key, Content-Type,
        remove)``, in order); False when that upload is queued already (nothing added)."""
        with self.lock, self.db:  # one transaction: committed whole, or rolled back
            cur = self.db.execute("INSERT OR IGNORE INTO events VALUES (?, ?, ?, 'pending')",
                                  (upload, body.decode(), now))
            if cur.rowcount != 1:
                return False
            self.db.executemany("INSERT INTO objects (event, part, path, key, state, next_try, content_type, remove) "
                                "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                                [(upload, i, path, key, now, kind, int(remove))
                                 for i, (path, key, kind, remove) in enumerate(objects)])
        return True

    def due(self, now: float, limit: int, busy: set[tuple[str, int]]) -> list[tuple]:
        """Pending objects whose time has come, oldest first; a manifest only once its event's parts are all up."""
        with self.lock:
            rows = self.db.execute(
                "SELECT o.event, o.part, o.path, o.key, o.attempts, e.created, o.content_type, o.remove "
                "FROM objects o JOIN events e "
                "ON e.id = o.event WHERE o.state = 'pending' AND o.next_try <= ? AND (o.path IS NOT NULL OR NOT "
                "EXISTS (SELECT 1 FROM objects p WHERE p.event = o.event AND p.path IS NOT NULL "
                "AND p.state != 'done')) ORDER BY o.next_try, e.created, o.part LIMIT ?",
                (now, limit + len(busy))).fetchall()
        return [r for r in rows if (r[0], r[1]) not in busy][:limit]

    def mark(self, event: str, part: int, state: str, attempts: int, next_try: float, error: str | None) -> None:
        with self.lock, self.db:
            self.db.execute("UPDATE objects SET state = ?, attempts = ?, next_try = ?, error = ? "
                            "WHERE event = ? AND part = ?", (state, attempts, next_try, error, event, part))
            if state == "failed":  # the event's other parts and its manifest are not tried any more
                self.db.execute("UPDATE objects SET state = 'failed', error = 'another part failed' "
                                "WHERE event = ? AND state = 'pending'", (event,))
                self.db.execute("UPDATE events SET state = 'failed' WHERE id = ?", (event,))

    def all_due_now(self, now: float) -> None:
        """The store answered again: every waiting object is due."""
        with self.lock, self.db:
            self.db.execute("UPDATE objects SET next_try = ? WHERE state = 'pending' AND next_try > ?", (now, now))

    def event(self, upload: str) -> tuple[str, list[str]]:
        """An upload's event JSON and its objects' keys, in order: the parts', then the manifest's."""
        with self.lock:
            body = self.db.execute("SELECT body FROM events WHERE id = ?", (upload,)).fetchone()[0]
            keys = [k for (k,) in self.db.execute("SELECT key FROM objects WHERE event = ? ORDER BY part", (upload,))]
        return body, keys

    def removable(self, upload: str) -> list[str]:
        """The local files of an upload's parts that go once up or failed for good."""
        with self.lock:
            return [p for (p,) in self.db.execute("SELECT path FROM objects WHERE event = ? AND remove = 1 "
                                                  "AND path IS NOT NULL", (upload,))]

    def pending_paths(self) -> set[str]:
        """The local files of parts still to go (what a restart must not delete)."""
        with self.lock:
            return {p for (p,) in self.db.execute("SELECT path FROM objects WHERE state = 'pending' "
                                                  "AND path IS NOT NULL")}

    def set_event(self, event_id: str, state: str) -> None:
        with self.lock, self.db:
            self.db.execute("UPDATE events SET state = ? WHERE id = ?", (state, event_id))

    def known(self, upload: str) -> bool:
        """Is this upload queued (pending, up, told or failed)?"""
        with self.lock:
            return self.db.execute("SELECT 1 FROM events WHERE id = ?", (upload,)).fetchone() is not None

    def untold(self) -> list[str]:
        with self.lock:
            return [i for (i,) in self.db.execute("SELECT id FROM events WHERE state = 'uploaded' ORDER BY created")]

    def counts(self) -> dict[str, int]:
        """Objects by state (for the gauges and tests)."""
        with self.lock:
            return dict(self.db.execute("SELECT state, count(*) FROM objects GROUP BY state").fetchall())

    def close(self) -> None:
        with self.lock:
            self.db.close()
