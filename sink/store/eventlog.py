"""The sink's ``--events`` file: one JSON line per event, bounded by size, reopened for logrotate.

Each line is ``msgspec.json.encode(event)`` of a common.wire.Event (so NaN or infinity can
never be written: the event's fields are validated numbers, and msgspec writes none of them).
A line is appended whole or not at all: a write cut short by a full disk is truncated away, so
the file never holds half a line followed by the next one.

When a line would take the file past ``max_bytes`` the file is renamed ``<path>.1`` (``.1`` to
``.2`` and so on, ``keep`` of them kept) and a new one started. ``reopen`` (SIGHUP) starts
writing to ``path`` afresh, for logrotate's rename-then-HUP.
"""

from __future__ import annotations

import os
from pathlib import Path

from camwire.sink.store.disk import WriteErrors


class EventLog:
    def __init__(self, path: Path, errors: WriteErrors, max_bytes: int = 100 << 20, keep: int = 3) -> None:
        self.path, self.errors, self.max_bytes, self.keep = path, errors, max_bytes, keep
        self._fd: int | None = None
        self._size = 0
        self._open()

    def _open(self) -> bool:
        """Open (or create) the file for appending; a failure is counted and tried again later."""
        if self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            self.errors("events", exc)
            return False
        return True

    def write(self, line: bytes) -> bool:
        """Append ``line`` (ending in a newline); False when it could not be written (counted)."""
        if not self._open():
            return False
        if self._size and self._size + len(line) > self.max_bytes:
            self.rotate()
            if not self._open():
                return False
        assert self._fd is not None
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(28, "No space left on device (short write)", str(self.path))
        except OSError as exc:
            try:  # no half lines: cut back to where this line began
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            self.errors("events", exc)
            return False
        self._size += written
        return True

    def rotate(self) -> None:
        """``path`` -> ``path.1`` -> ... -> ``path.<keep>`` (the oldest dropped); a new file next."""
        self.close()
        try:
            for i in range(self.keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
            if self.keep > 0:
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
            else:
                self.path.unlink()
        except OSError as exc:
            self.errors("events", exc)

    def reopen(self) -> None:
        """Write to ``path`` afresh (logrotate moved the old file away, then sent SIGHUP)."""
        self.close()
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
