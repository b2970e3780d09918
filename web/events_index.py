"""The sink's events, searchable: its ``--events`` JSON lines followed into an in-memory SQLite.

The file is sink.store.eventlog's: one ``wire.Event`` per line, appended whole, rotated past a
size to ``<path>.1`` .. ``<path>.3`` (the oldest the highest number), or moved away by logrotate
and started afresh. At start the rotated files are read oldest first, then the live one is
followed: a new inode at the path is a rotation (the rest of the old file is read first, and any
rotated file newer than it), a file shorter than what was read is a truncation (read again from
its start). The read position never passes the last newline, so a line half-written when it is
read is read again whole next time, and a line the sink cut back after a full disk is never seen.

A tracked object (type ``object``) is one row, keyed by its ``object_id``, holding its newest
phase (start, update, end) and ordered by its ``first_seen``; every other event is a row of its
own, keyed by its id, ordered by its ``ts``. Pages go newest first with a cursor of the last
row's (ts, key), so rows added meanwhile never shift the next page. At most ``max_rows`` rows are
kept, the oldest dropped.

Nothing here goes over the wire; :meth:`EventIndex.query` gives the dicts the HTTP API sends: the
JSON line plus ``snapshot_url``, ``thumb_url`` and ``clip_url``, and for a tracked object
``duration``: how long it stayed (``last_seen - first_seen`` of its newest phase: so far, while
that is not ``end``). A type this module does not know (``suggested_mask``, a new one) is a row
like any other.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import msgspec

from camwire.common import wire
from camwire.common.settings.sink import EVENTS_KEEP

ROTATED = EVENTS_KEEP  # the sink's rotated files: <path>.1 .. <path>.3
MAX_LIMIT = 500
MAX_LINE = 1 << 20  # a "line" with no newline in this many bytes is garbage, skipped
CHUNK = 1 << 20  # bytes read at a time, at least; at most 4 of them (the lock is held while they go in)
THUMB_SUFFIX = ".thumb.jpg"  # sink.store.snapshots: <id>.jpg -> <id>.thumb.jpg

SCHEMA = """
CREATE TABLE events (
    key     TEXT PRIMARY KEY,  -- object_id for a tracked object, else the event id
    id      TEXT NOT NULL,     -- the id of the line held (an object's newest phase)
    ts      REAL NOT NULL,     -- what rows are ordered by: an object's first_seen, else ts
    line_ts REAL NOT NULL,     -- the line's own ts: a later phase replaces an earlier one only
    type    TEXT NOT NULL,
    camera  TEXT NOT NULL,
    body    TEXT NOT NULL      -- the JSON line as the sink wrote it
);
CREATE INDEX events_order ON events (ts, key);
CREATE INDEX events_id ON events (id);
CREATE INDEX events_camera ON events (camera, ts, key);  -- a camera's page; the cameras, for a dropdown
CREATE INDEX events_type ON events (type, ts, key);
CREATE TABLE labels (key TEXT NOT NULL, label TEXT NOT NULL, PRIMARY KEY (key, label)) WITHOUT ROWID;
CREATE INDEX labels_by_label ON labels (label);
CREATE TABLE zones (key TEXT NOT NULL, zone TEXT NOT NULL, PRIMARY KEY (key, zone)) WITHOUT ROWID;
CREATE INDEX zones_by_zone ON zones (zone);
-- each phase a tracked object's lines told (start, the updates and what they changed, end): the
-- review page's timeline of an object
CREATE TABLE phases (key TEXT NOT NULL, ts REAL NOT NULL, phase TEXT NOT NULL, changes TEXT NOT NULL,
                     PRIMARY KEY (key, ts, phase)) WITHOUT ROWID;
"""
MAX_PHASES = 64  # an object's phases kept at most: its first and its newest

_decoder = msgspec.json.Decoder(wire.Event)


class EventIndex:
    """One writer thread calls :meth:`poll`; any thread may query. One lock guards the database."""

    def __init__(self, events_file: Path, data_dir: Path, kept: Callable[[str], bool] | None = None,
                 max_rows: int = 200_000) -> None:
        self.path, self.data_dir, self.kept, self.max_rows = Path(events_file), Path(data_dir), kept, max_rows
        self.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()
        self.taken = 0  # good lines indexed, in all
        self.malformed = 0  # lines skipped: not JSON, not an event, or cut short for good
        self._rows = 0
        self._fd: int | None = None  # the file being read, its (st_dev, st_ino), and how far
        self._ident: tuple[int, int] | None = None
        self._offset = 0
        # the rotated files, oldest first, and the live one, opened now: a rotation while they
        # are read renames them, and an open file is the same file under any name
        self._backlog: list[int] = [fd for fd in map(_open, [*self._rotated()[::-1], self.path]) if fd is not None]

    # -- following the file ---------------------------------------------------------------------

    def poll(self, max_bytes: int = 16 << 20) -> int:
        """Index what was appended since the last call, at most about ``max_bytes`` of it (call
        again soon when a big backlog is being read); returns the good lines taken."""
        taken = 0
        while max_bytes > 0:
            if self._fd is None and not self._next_file():
                break
            n, size = self._read(max_bytes)
            taken += n
            max_bytes -= size
            if size:
                continue
            if os.fstat(self._fd).st_size < self._offset:  # truncated in place (copytruncate): again from 0
                self._offset = 0
                continue
            # at the end of the file held: it is the live one unless the path now names another
            if not self._backlog and not self._rotated_away():
                break
            self._finish_file()
        return taken

    def close(self) -> None:
        for fd in self._backlog + ([self._fd] if self._fd is not None else []):
            os.close(fd)
        self._backlog, self._fd = [], None
        with self.lock:
            self.db.close()

    def _rotated(self) -> list[Path]:
        """``<path>.1`` (the newest rotated file) .. ``<path>.3``."""
        return [self.path.with_name(f"{self.path.name}.{i}") for i in range(1, ROTATED + 1)]

    def _next_file(self) -> bool:
        """Hold the oldest file not read yet (the backlog, then the live path); False if none."""
        fd = self._backlog.pop(0) if self._backlog else _open(self.path)
        if fd is None:
            return False
        st = os.fstat(fd)
        self._fd, self._ident, self._offset = fd, (st.st_dev, st.st_ino), 0
        return True

    def _rotated_away(self) -> bool:
        """Whether the live path is no longer the file held (rotated, or moved away by logrotate);
        then the rotated files newer than the one held are queued, to be read before the new one."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # moved away, the new one not made yet: keep reading the one held
        if (st.st_dev, st.st_ino) == self._ident:
            return False
        assert self._fd is not None
        held_mtime = os.fstat(self._fd).st_mtime_ns
        newer: list[tuple[Path, int]] = []
        found = False
        for p in self._rotated():
            try:
                rst = os.stat(p)
            except FileNotFoundError:
                break
            if (rst.st_dev, rst.st_ino) == self._ident:
                found = True
                break
            newer.append((p, rst.st_mtime_ns))
        if not found:
            # the file held is not among the rotated ones: rotated out of them all (deleted), or
            # moved elsewhere by logrotate. Those written since it may be newer; a file read
            # twice costs only time, since a row already held is never replaced by an older line
            newer = [(p, mtime) for p, mtime in newer if mtime >= held_mtime]
        self._backlog = [fd for fd in map(_open, [p for p, _ in newer][::-1]) if fd is not None]
        return True

    def _finish_file(self) -> None:
        assert self._fd is not None
        if os.fstat(self._fd).st_size > self._offset:  # a last line that will never be finished
            self.malformed += 1
        os.close(self._fd)
        self._fd = None

    def _read(self, max_bytes: int) -> tuple[int, int]:
        """Whole lines from the held file's offset; (good lines taken, bytes consumed)."""
        assert self._fd is not None
        data = os.pread(self._fd, max(CHUNK, min(max_bytes, 4 * CHUNK)), self._offset)
        end = data.rfind(b"\n") + 1
        if end == 0:
            if len(data) >= MAX_LINE:  # no newline in sight: skip to the next one
                self.malformed += 1
                nl = self._skip_line()
                self._offset = nl
                return 0, len(data)
            return 0, 0
        lines = data[:end].split(b"\n")[:-1]
        taken = self._ingest(lines)
        self._offset += end
        return taken, end

    def _skip_line(self) -> int:
        """Where the line at the offset ends (past its newline), or the end of the file."""
        assert self._fd is not None
        pos = self._offset
        while True:
            data = os.pread(self._fd, CHUNK, pos)
            if not data:
                return pos
            nl = data.find(b"\n")
            if nl >= 0:
                return pos + nl + 1
            pos += len(data)

    # -- rows ---------------------------------------------------------------------------------

    def ingest(self, lines: list[bytes]) -> int:
        """Lines of the sink's events file read elsewhere (a sink on another host: web.remote),
        indexed as the file's own are; the good lines taken."""
        return self._ingest(lines)

    def _ingest(self, lines: list[bytes]) -> int:
        rows = []
        for line in lines:
            if not line.strip():
                continue
            try:
                event = _decoder.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.malformed += 1
                continue
            rows.append((event, line.decode("utf-8", "replace")))
        with self.lock:
            self.db.execute("BEGIN")
            try:
                for event, body in rows:
                    self._put(event, body)
                if self._rows > self.max_rows:
                    self._drop_oldest(self._rows - self.max_rows)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        self.taken += len(rows)
        return len(rows)

    def _put(self, event: wire.Event, body: str) -> None:
        is_object = event.type == "object" and event.object_id is not None
        key = event.object_id if is_object else event.id
        ts = event.first_seen if is_object and event.first_seen is not None else event.ts
        if is_object and event.phase is not None:  # a phase older than the one held is still one it had
            self._phase(key, event)
        held = self.db.execute("SELECT line_ts, ts FROM events WHERE key = ?", (key,)).fetchone()
        if held is not None:
            if not is_object or event.ts < held[0]:
                return  # a line seen twice (a file read again), or a phase older than the one held
            ts = held[1] if event.first_seen is None else ts
        else:
            self._rows += 1
        self.db.execute("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (key, event.id, ts, event.ts, event.type, event.camera, body))
        labels = {d.label for d in event.detections} | ({event.label} if event.label else set())
        self.db.executemany("INSERT OR IGNORE INTO labels VALUES (?, ?)", [(key, x) for x in labels])
        self.db.executemany("INSERT OR IGNORE INTO zones VALUES (?, ?)", [(key, z) for z in event.zones])

    def _phase(self, key: str, event: wire.Event) -> None:
        """One of an object's phases; past MAX_PHASES (a car parked for a day, updated every few
        seconds), the second oldest goes: its start and its newest ones are what a timeline shows."""
        self.db.execute("INSERT OR IGNORE INTO phases VALUES (?, ?, ?, ?)",
                        (key, event.ts, event.phase, ",".join(event.changes)))
        if self.db.execute("SELECT COUNT(*) FROM phases WHERE key = ?", (key,)).fetchone()[0] > MAX_PHASES:
            self.db.execute("DELETE FROM phases WHERE key = ? AND ts = (SELECT ts FROM phases WHERE key = ? "
                            "ORDER BY ts LIMIT 1 OFFSET 1)", (key, key))

    def _drop_oldest(self, n: int) -> None:
        keys = [(r[0],) for r in self.db.execute("SELECT key FROM events ORDER BY ts, key LIMIT ?", (n,))]
        for table in ("events", "labels", "zones", "phases"):
            self.db.executemany(f"DELETE FROM {table} WHERE key = ?", keys)
        self._rows -= len(keys)

    # -- queries --------------------------------------------------------------------------------

    def query(self, camera: str | None = None, label: str | None = None, zone: str | None = None,
              type: str | None = None, since: float | None = None, until: float | None = None,
              before: str | None = None, limit: int = 50) -> dict[str, Any]:
        """``{"events": [...], "next": cursor or None}``, newest first; ``before`` is the ``next``
        of the page before (ValueError when it is not one); ``since``/``until`` bound ``ts``
        (inclusive); ``limit`` is clamped to 1..500."""
        limit = max(1, min(MAX_LIMIT, int(limit)))
        where, params = [], []
        for column, value in (("camera", camera), ("type", type)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        # row by row down the (ts, key) index until the page is full: a common label stops early
        if label:
            where.append("EXISTS (SELECT 1 FROM labels l WHERE l.key = events.key AND l.label = ?)")
            params.append(label)
        if zone:
            where.append("EXISTS (SELECT 1 FROM zones z WHERE z.key = events.key AND z.zone = ?)")
            params.append(zone)
        if since is not None:
            where.append("ts >= ?")
            params.append(float(since))
        if until is not None:
            where.append("ts <= ?")
            params.append(float(until))
        if before:
            c_ts, c_key = decode_cursor(before)
            where.append("(ts, key) < (?, ?)")
            params += [c_ts, c_key]
        sql = ("SELECT key, ts, body FROM events " + (f"WHERE {' AND '.join(where)} " if where else "")
               + "ORDER BY ts DESC, key DESC LIMIT ?")
        with self.lock:
            rows = self.db.execute(sql, (*params, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return {"events": [self._shape(key, body) for key, _, body in rows],
                "next": encode_cursor(rows[-1][1], rows[-1][0]) if more else None}

    def get(self, event_id: str) -> dict[str, Any] | None:
        """One event by its id, or a tracked object by its object_id or its newest phase's id."""
        with self.lock:
            row = self.db.execute("SELECT key, body FROM events WHERE key = ? OR id = ? LIMIT 1",
                                  (event_id, event_id)).fetchone()
        return None if row is None else self._shape(*row)

    def stats(self) -> dict[str, int]:
        """For /api/system: lines indexed and skipped, rows held."""
        return {"taken": self.taken, "malformed": self.malformed, "rows": self._rows}

    def motion_states(self) -> dict[str, bool]:
        """Each camera's motion now, as its newest motion_start or motion_end says: for a camera
        the sink writes no status row of (status.db's ``motion`` is the sink's own, web.api)."""
        with self.lock:
            rows = self.db.execute("SELECT camera, type, MAX(ts) FROM events WHERE type IN "
                                   "('motion_start', 'motion_end') GROUP BY camera").fetchall()
        return {camera: kind == "motion_start" for camera, kind, _ in rows}

    def counts(self) -> dict[str, int]:
        """Rows by type."""
        with self.lock:
            return dict(self.db.execute("SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type").fetchall())

    def labels(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT DISTINCT label FROM labels ORDER BY label")]

    def zones(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT DISTINCT zone FROM zones ORDER BY zone")]

    def cameras(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT DISTINCT camera FROM events ORDER BY camera")]

    def phases(self, keys: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each tracked object's phases, oldest first: ``{ts, phase, changes}`` (at most MAX_PHASES:
        its first and its newest)."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.lock:
            for key in keys:
                rows = self.db.execute("SELECT ts, phase, changes FROM phases WHERE key = ? ORDER BY ts",
                                       (key,)).fetchall()
                out[key] = [{"ts": ts, "phase": phase, "changes": changes.split(",") if changes else []}
                            for ts, phase, changes in rows]
        return out

    def _shape(self, key: str, body: str) -> dict[str, Any]:
        event = json.loads(body)
        snapshot = event.get("snapshot")
        event["snapshot_url"] = media_url(snapshot) if snapshot else None
        thumb = thumb_path(snapshot) if snapshot else None
        event["thumb_url"] = media_url(thumb) if thumb and (self.data_dir / thumb).is_file() else None
        event["clip_url"] = f"/api/events/{quote(key, safe='')}/clip.mp4" if self.kept and self.kept(key) else None
        if event.get("type") == "object":
            event["duration"] = duration(event)
        return event


def _open(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def clip_key(event: dict[str, Any]) -> str:
    """What the recorder keeps an event's clip under (recorder.keep): a tracked object's
    object_id, any other event's id."""
    if event.get("type") == "object" and event.get("object_id"):
        return event["object_id"]
    return event["id"]


def duration(event: dict[str, Any]) -> float | None:
    """How long a tracked object stayed, in seconds (so far, before its ``end``); None when its
    line lacks a first or last sighting."""
    first, last = event.get("first_seen"), event.get("last_seen")  # numbers: the line was a valid wire.Event
    if first is None or last is None:
        return None
    return max(0.0, last - first)  # a camera's clock stepped back mid-object is no negative stay


def thumb_path(snapshot: str) -> str | None:
    """``snapshots/cam/day/<id>.jpg`` -> ``snapshots/cam/day/<id>.thumb.jpg`` (an object's only)."""
    return snapshot[: -len(".jpg")] + THUMB_SUFFIX if snapshot.endswith(".jpg") else None


def media_url(relative: str) -> str:
    """A path under the sink's data dir as a ``/media/`` URL (every character that is not a
    plain path character escaped, so ``%`` in a file name reaches the file)."""
    return "/media/" + quote(relative, safe="/")


def encode_cursor(ts: float, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([ts, key]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (ts, key) a cursor holds; ValueError when it is not one of ours."""
    try:
        ts, key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(ts), str(key)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a cursor: {cursor[:40]!r}") from exc
