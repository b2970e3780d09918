"""The recorder's SQLite index: every ring segment and every kept event clip, so a time range is
found with one query instead of a walk over folders.

``DIR/index.db`` (WAL, so ``camwire clip`` and the web console, through recorder.catalog, read
while the recorder writes). Paths are relative to DIR. A segment row is written when its file is
opened (``closed = 0``) and completed when the file is finalised; a row still open at start-up is
a file the recorder was killed in, and :meth:`Index.open_segments` hands those back to be
recovered.

A full disk makes any write here raise ``sqlite3.OperationalError`` (opening the index too: WAL
needs its ``-shm`` file). The connection stays usable and works again once there is space, so
the ring catches the error, counts what it lost and tries again later; :meth:`Index.prepare` is
retried until the tables are there.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camwire.common import database

INDEX_NAME = "index.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id       INTEGER PRIMARY KEY,
    camera   TEXT    NOT NULL,
    start_ns INTEGER NOT NULL,          -- capture time of the first frame
    end_ns   INTEGER,                   -- capture time just past the last frame
    path     TEXT    NOT NULL UNIQUE,
    enc      TEXT    NOT NULL,          -- what the file holds came from: h264/hevc passthrough, or lz4/raw/jpeg frames
    bytes    INTEGER NOT NULL DEFAULT 0,
    frames   INTEGER NOT NULL DEFAULT 0,
    gaps     INTEGER NOT NULL DEFAULT 0,  -- frames lost before the recorder (seq holes) inside this segment
    closed   INTEGER NOT NULL DEFAULT 0,
    first_seq INTEGER,                  -- the seq of its first frame and of its last: where a restarted
    last_seq  INTEGER                   -- recorder's camera resumes from (NULL in an index from before)
);
CREATE INDEX IF NOT EXISTS segments_by_camera ON segments (camera, start_ns);
CREATE TABLE IF NOT EXISTS keeps (
    event_id TEXT    PRIMARY KEY,
    camera   TEXT    NOT NULL,
    from_ns  INTEGER NOT NULL,
    to_ns    INTEGER NOT NULL,
    dir      TEXT    NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    event    TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS kept (
    event_id   TEXT    NOT NULL,
    segment_id INTEGER NOT NULL,
    path       TEXT    NOT NULL,
    PRIMARY KEY (event_id, segment_id)
);
CREATE TABLE IF NOT EXISTS record_switch (  -- each camera's record switch as the sink last told it
    camera    TEXT    PRIMARY KEY,
    recording INTEGER NOT NULL,             -- 0: switched off, not recorded (recorder.record_switch)
    ts        REAL    NOT NULL,             -- the camera_switch event's time: an older one is not applied
    reason    TEXT                          -- its reason: "record=off by console 10.0.0.7"
);
"""


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    camera: str
    start_ns: int
    end_ns: int | None
    path: str
    enc: str
    bytes: int
    frames: int
    gaps: int
    closed: bool


@dataclass(frozen=True, slots=True)
class Totals:
    """What the index holds, for a status page: its segments, their bytes, the kept clips."""
    segments: int
    ring_bytes: int
    kept_clips: int


@dataclass(frozen=True, slots=True)
class Keep:
    event_id: str
    camera: str
    from_ns: int
    to_ns: int
    dir: str
    complete: bool
    event: dict[str, Any]


_SEGMENT_COLUMNS = "id, camera, start_ns, end_ns, path, enc, bytes, frames, gaps, closed"


class Index:
    """One connection, used by one thread."""

    def __init__(self, root: Path, readonly: bool = False) -> None:
        path = root / INDEX_NAME
        if readonly:
            if not path.exists():
                raise FileNotFoundError(f"no recording index at {path}")
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        else:
            root.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None)  # autocommit: every row lands at once
        self.ready = readonly
        self.prepare()

    def prepare(self) -> bool:
        """WAL mode and the tables, once; False while the disk refuses them (try again later)."""
        if not self.ready:
            try:
                # an index made before first_seq and last_seq were gains them
                database.prepare(self.db, SCHEMA, {"segments": [("first_seq", "INTEGER"), ("last_seq", "INTEGER")]})
            except sqlite3.OperationalError:
                return False
            self.ready = True
        return True

    def _check(self) -> None:
        if not self.prepare():
            raise sqlite3.OperationalError("the index cannot be opened for writing (is the disk full?)")

    def close(self) -> None:
        self.db.close()

    # -- segments -------------------------------------------------------------------------------

    def open_segment(self, camera: str, start_ns: int, path: str, enc: str, first_seq: int | None = None) -> int:
        self._check()
        cur = self.db.execute("INSERT INTO segments (camera, start_ns, path, enc, first_seq) VALUES (?, ?, ?, ?, ?)",
                              (camera, start_ns, path, enc, first_seq))
        return int(cur.lastrowid)

    def close_segment(self, seg_id: int, end_ns: int, size: int, frames: int, gaps: int,
                      last_seq: int | None = None) -> None:
        self.db.execute("UPDATE segments SET end_ns = ?, bytes = ?, frames = ?, gaps = ?, closed = 1, "
                        "last_seq = COALESCE(?, last_seq) WHERE id = ?", (end_ns, size, frames, gaps, last_seq, seg_id))

    def first_seq(self, seg_id: int) -> int | None:
        row = self.db.execute("SELECT first_seq FROM segments WHERE id = ?", (seg_id,)).fetchone()
        return row[0] if row else None

    def last_seq(self, camera: str) -> int | None:
        """The seq of the last frame written of ``camera`` (its newest file's), if known."""
        self._check()
        row = self.db.execute("SELECT last_seq FROM segments WHERE camera = ? AND last_seq IS NOT NULL "
                              "ORDER BY id DESC LIMIT 1", (camera,)).fetchone()
        return row[0] if row else None

    def delete_segment(self, seg_id: int) -> None:
        self.db.execute("DELETE FROM segments WHERE id = ?", (seg_id,))

    def overlapping(self, camera: str, from_ns: int, to_ns: int) -> list[Segment]:
        """Closed segments of ``camera`` with any part in [from_ns, to_ns), oldest first."""
        return self._segments("WHERE camera = ? AND closed = 1 AND start_ns < ? AND end_ns > ? ORDER BY start_ns",
                              (camera, to_ns, from_ns))

    def open_segments(self) -> list[Segment]:
        self._check()
        return self._segments("WHERE closed = 0 ORDER BY start_ns", ())

    def expired(self, before_ns: int) -> list[Segment]:
        """Closed segments that ended before ``before_ns``."""
        return self._segments("WHERE closed = 1 AND end_ns < ? ORDER BY start_ns", (before_ns,))

    def over_budget(self, max_bytes: int) -> list[Segment]:
        """The oldest closed segments whose removal brings the ring's total to ``max_bytes`` or less."""
        total = self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE closed = 1").fetchone()[0]
        out: list[Segment] = []
        for seg in self._segments("WHERE closed = 1 ORDER BY end_ns", ()):
            if total <= max_bytes:
                break
            out.append(seg)
            total -= seg.bytes
        return out

    def oldest(self) -> list[Segment]:
        """Every closed segment, the oldest first (the order the free-space floor deletes in)."""
        return self._segments("WHERE closed = 1 ORDER BY end_ns", ())

    def in_window(self, camera: str | None, from_ns: int | None, to_ns: int | None) -> list[Segment]:
        """Segments, open ones too, with any part in [from_ns, to_ns) (either end None: unbounded),
        of ``camera`` or of every camera, by camera then start; an open one (end_ns None) reaches
        as far as the recorder may have written."""
        where, params = [], []
        if camera is not None:
            where.append("camera = ?")
            params.append(camera)
        if to_ns is not None:
            where.append("start_ns < ?")
            params.append(to_ns)
        if from_ns is not None:
            where.append("(end_ns IS NULL OR end_ns > ?)")
            params.append(from_ns)
        return self._segments((f"WHERE {' AND '.join(where)} " if where else "") + "ORDER BY camera, start_ns",
                              tuple(params))

    def totals(self) -> Totals:
        n, size = self.db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM segments").fetchone()
        kept = self.db.execute("SELECT COUNT(*) FROM keeps").fetchone()[0]
        return Totals(n, size, kept)

    def _segments(self, where: str, params: tuple) -> list[Segment]:
        self._check()
        rows = self.db.execute(f"SELECT {_SEGMENT_COLUMNS} FROM segments {where}", params).fetchall()
        return [Segment(*row[:9], bool(row[9])) for row in rows]

    # -- the record switch ---------------------------------------------------------------------

    def record_switches(self) -> dict[str, tuple[bool, float]]:
        """Each camera's record switch as last kept: camera -> (on, the event's time)."""
        self._check()
        return {camera: (bool(on), ts) for camera, on, ts in
                self.db.execute("SELECT camera, recording, ts FROM record_switch")}

    def set_record_switch(self, camera: str, on: bool, ts: float, reason: str | None) -> None:
        self._check()
        self.db.execute("INSERT OR REPLACE INTO record_switch VALUES (?, ?, ?, ?)", (camera, int(on), ts, reason))

    # -- kept event clips ---------------------------------------------------------------------

    def add_keep(self, keep: Keep) -> bool:
        """Record an event to keep; False when it is already known (the same event seen twice)."""
        self._check()
        cur = self.db.execute("INSERT OR IGNORE INTO keeps VALUES (?, ?, ?, ?, ?, 0, ?)",
                              (keep.event_id, keep.camera, keep.from_ns, keep.to_ns, keep.dir,
                               json.dumps(keep.event)))
        return cur.rowcount == 1

    def extend_keep(self, event_id: str, to_ns: int, event: dict[str, Any]) -> bool:
        """A kept clip's window stretched to ``to_ns`` (never shortened) and its event replaced; a
        complete one whose window grew is pending again. False when there is no such clip."""
        self._check()
        cur = self.db.execute("UPDATE keeps SET complete = CASE WHEN ? > to_ns THEN 0 ELSE complete END, "
                              "to_ns = MAX(to_ns, ?), event = ? WHERE event_id = ?",
                              (to_ns, to_ns, json.dumps(event), event_id))
        return cur.rowcount == 1

    def pending_keeps(self, camera: str | None = None) -> list[Keep]:
        self._check()
        sql = "SELECT event_id, camera, from_ns, to_ns, dir, complete, event FROM keeps WHERE complete = 0"
        rows = self.db.execute(sql + (" AND camera = ?" if camera else ""), (camera,) if camera else ()).fetchall()
        return [Keep(r[0], r[1], r[2], r[3], r[4], bool(r[5]), json.loads(r[6])) for r in rows]

    def kept_segment_ids(self, event_id: str) -> set[int]:
        return {r[0] for r in self.db.execute("SELECT segment_id FROM kept WHERE event_id = ?", (event_id,))}

    def kept_paths(self, event_id: str) -> list[str]:
        """The files (relative to DIR) linked into ``event_id``'s kept clip, in no order."""
        return [r[0] for r in self.db.execute("SELECT path FROM kept WHERE event_id = ?", (event_id,))]

    def kept_event_ids(self) -> set[str]:
        """Every event with a file in its kept clip."""
        return {r[0] for r in self.db.execute("SELECT DISTINCT event_id FROM kept")}

    def mark_kept(self, event_id: str, segment_id: int, path: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO kept VALUES (?, ?, ?)", (event_id, segment_id, path))

    def complete_keep(self, event_id: str) -> None:
        self.db.execute("UPDATE keeps SET complete = 1 WHERE event_id = ?", (event_id,))

    def keeps(self, complete: bool, before_ns: int | None = None) -> list[Keep]:
        """Kept clips whose window is on disk (``complete``), or all of them, whose window ended
        before ``before_ns`` if given, the oldest event first."""
        self._check()
        where = ["complete = 1"] if complete else []
        params: tuple = ()
        if before_ns is not None:
            where.append("to_ns < ?")
            params = (before_ns,)
        rows = self.db.execute("SELECT event_id, camera, from_ns, to_ns, dir, complete, event FROM keeps "
                               + (f"WHERE {' AND '.join(where)} " if where else "") + "ORDER BY to_ns",
                               params).fetchall()
        return [Keep(r[0], r[1], r[2], r[3], r[4], bool(r[5]), json.loads(r[6])) for r in rows]

    def delete_keep(self, event_id: str) -> None:
        self.db.execute("DELETE FROM kept WHERE event_id = ?", (event_id,))
        self.db.execute("DELETE FROM keeps WHERE event_id = ?", (event_id,))
