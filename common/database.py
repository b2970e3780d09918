"""camwire's SQLite files (the sink's status.db and ledger.db, the recorder's index.db, the
uploads.db of either): each is prepared one way, here.

WAL, so readers (``camwire status``, the console) never block the daemon that writes, with
``synchronous=NORMAL``: WAL stays consistent after a crash, and no fsync per commit. A file made
by an older camwire gains the columns its tables lack (``ALTER TABLE ... ADD COLUMN``), so an
upgrade never needs a migration step.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Mapping, Sequence

Columns = Mapping[str, Sequence[tuple[str, str]]]  # table -> (column, its type and default)


def prepare(db: sqlite3.Connection, schema: str, added: Columns | None = None) -> None:
    """WAL mode, the tables of ``schema``, and ``added`` columns a file from before them lacks.
    Raises sqlite3.Error (a full or read-only disk): the caller says what that means for it."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    for table, columns in (added or {}).items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column, kind in columns:
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}".rstrip())


def connect(path: Path, schema: str, added: Columns | None = None, timeout: float = 5.0) -> sqlite3.Connection:
    """A writer's connection to ``path`` (its folder made), prepared; raises sqlite3.Error or
    OSError (a full or read-only disk), leaving nothing open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=timeout)
    try:
        prepare(db, schema, added)
    except sqlite3.Error:
        db.close()
        raise
    return db
