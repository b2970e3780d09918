"""What the sink answers other hosts over ``--serve`` (common.serve): its status, its events file
and its snapshots, read from its own files as a console on this host would read them.

Ops (args -> body [, blobs]):

- ``status`` {} -> {cameras, workers, sink, refused}: status.db's rows (sink.store.status_db).
- ``events`` {cursor, max_bytes?} -> {lines, cursor, next}: whole lines of the events file and its rotated
  ones after ``cursor`` ([st_dev, st_ino, offset] of the file read last, None from the start:
  the oldest rotated file). Stateless: the asker keeps the cursor. A cursor naming a file no
  longer there starts again from the oldest file (a line read twice changes nothing in the
  console's index, web.events_index). At most ``max_bytes`` a time; ``next`` says more waits.
- ``snapshot`` {name} -> blob: a file under ``DATA_DIR/snapshots`` and nothing else there.
- ``reviewed`` {ids, user?} -> [object id, ...]: those of ``ids`` the review marks hold
  (sink.store.reviews: for everyone, or for ``user``).

Each runs on the server's pool (common.serve), never on the sink's loop: the files are read as
the sink writes them (status.db read-only in WAL mode, events whole lines only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from camwire.common.serve import Blobs, Op
from camwire.sink.store.reviews import FILE as REVIEWS_FILE, read_reviewed
from camwire.sink.store.status_db import read_refused, read_sink, read_status

EVENTS_MAX_BYTES = 4 << 20  # per answer: a big backlog comes in several
SNAPSHOT_MAX_BYTES = 64 << 20
REVIEWED_MAX_IDS = 1000  # object ids in one question (web.remote asks in batches of these)


def ops(events: Path, data_dir: Path | None, rotated: int) -> dict[str, Op]:
    """The sink's ops over ``events`` (its ``--events``; ``rotated``: its .1 .. .N kept) and ``data_dir``."""
    def status(_args: dict[str, Any]) -> dict[str, Any]:
        db = data_dir / "status.db" if data_dir else None
        if db is None or not db.exists():
            return {"cameras": [], "workers": [], "sink": None, "refused": []}
        cameras, workers = read_status(db)
        return {"cameras": cameras, "workers": workers, "sink": read_sink(db), "refused": read_refused(db)}

    def events_after(args: dict[str, Any]) -> dict[str, Any]:
        cursor = args.get("cursor")
        if cursor is not None and not (isinstance(cursor, list) and len(cursor) == 3
                                       and all(isinstance(v, int) and v >= 0 for v in cursor)):
            raise ValueError("cursor: [st_dev, st_ino, offset] as this op answered it, or none")
        asked = args.get("max_bytes")
        limit = EVENTS_MAX_BYTES if not isinstance(asked, int) else max(1 << 10, min(asked, EVENTS_MAX_BYTES))
        return read_after(events, rotated, tuple(cursor) if cursor else None, limit)

    def snapshot(args: dict[str, Any]) -> tuple[None, Blobs]:
        if data_dir is None:
            raise LookupError("the sink keeps no snapshots (no --data-dir)")
        return None, [read_snapshot(data_dir, str(args.get("name", "")))]

    def reviewed(args: dict[str, Any]) -> list[str]:
        ids = [i for i in args.get("ids") or [] if isinstance(i, str)]
        if len(ids) > REVIEWED_MAX_IDS:
            raise ValueError(f"ids: at most {REVIEWED_MAX_IDS} in one question")
        user = args.get("user") if isinstance(args.get("user"), str) else None
        return sorted(read_reviewed(data_dir / REVIEWS_FILE, ids, user)) if data_dir else []

    return {"status": status, "events": events_after, "snapshot": snapshot, "reviewed": reviewed}


def read_snapshot(data_dir: Path, name: str) -> bytes:
    """``name`` (relative to ``data_dir``) when it is a file under ``data_dir/snapshots``; LookupError else."""
    root = (data_dir / "snapshots").resolve()
    path = (data_dir / name).resolve()
    if not name or root not in path.parents or not path.is_file():
        raise LookupError(f"no snapshot {name[:200]!r}")
    if path.stat().st_size > SNAPSHOT_MAX_BYTES:
        raise LookupError(f"snapshot {name[:200]!r} is too large to send")
    return path.read_bytes()


def read_after(path: Path, rotated: int, cursor: tuple[int, int, int] | None,
               max_bytes: int) -> dict[str, Any]:
    """Whole lines after ``cursor`` in ``path``'s rotated files (oldest first) and ``path``."""
    files = []  # (dev, ino, path), oldest first
    for p in [*(path.with_name(f"{path.name}.{i}") for i in range(rotated, 0, -1)), path]:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        files.append((st.st_dev, st.st_ino, p))
    start, offset = 0, 0
    if cursor is not None:
        for i, (dev, ino, _) in enumerate(files):
            if (dev, ino) == tuple(cursor[:2]):
                start, offset = i, int(cursor[2])
                break
    lines: list[bytes] = []
    budget = max_bytes
    out_cursor = list(cursor) if cursor else None
    for i in range(start, len(files)):
        dev, ino, p = files[i]
        try:
            with open(p, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if offset > size:  # truncated in place: from its start again
                    offset = 0
                f.seek(offset)
                data = f.read(budget)
        except FileNotFoundError:  # rotated away between the stat and the open: asked again next time
            break
        read_all = offset + len(data) >= size
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) >= budget:  # a "line" longer than the budget (garbage): skipped
            end = _past_next_newline(p, offset + len(data)) - offset
            if end <= len(data):  # no newline after it yet: wait for one (the live file)
                end = 0
            else:
                offset += end
                out_cursor = [dev, ino, offset]
                return {"lines": b"".join(lines), "cursor": out_cursor, "next": True}
        if end:
            lines.append(data[:end])
        offset += end
        budget -= end
        out_cursor = [dev, ino, offset]
        # a rotated file read to its end is done (a last line never finished stays unread); the
        # live one is where the next question starts
        if i == len(files) - 1 or not read_all or budget <= 0:
            return {"lines": b"".join(lines), "cursor": out_cursor, "next": not read_all or budget <= 0}
        offset = 0  # on to the next newer file
    return {"lines": b"".join(lines), "cursor": out_cursor, "next": False}


def _past_next_newline(path: Path, pos: int) -> int:
    """Where the line running at ``pos`` ends (past its newline), or ``pos`` when none follows yet."""
    with open(path, "rb") as f:
        f.seek(pos)
        at = pos
        while chunk := f.read(1 << 20):
            nl = chunk.find(b"\n")
            if nl >= 0:
                return at + nl + 1
            at += len(chunk)
    return pos
