"""A mistake in camwire.toml and where it is: :class:`ConfigError` (``FILE:LINE: reason``) and
:func:`line_of`, the line that sets a dotted key, found in the file's text (tomllib keeps no lines)."""

from __future__ import annotations

import re
from pathlib import Path


class ConfigError(ValueError):
    """A file refused: ``str()`` is ``FILE:LINE: reason`` (or ``FILE: reason`` with no line)."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


def line_of(text: str, where: str | tuple[str, ...]) -> int | None:
    """The line that sets the dotted key ``where`` (or its parts, for a key with a dot in it):
    under the deepest table header the file has for it, the rest of the key written as a plain or
    dotted key (``c1.every = 0``); else the header itself; for a key that is not in the file, its
    nearest table that is."""
    parts = where.split(".") if isinstance(where, str) else list(where)
    lines = [_code(line) for line in text.splitlines()]
    nearest = None  # the deepest table header there is: the answer when the key itself is not found
    for cut in range(len(parts), -1, -1):
        table, rest = parts[:cut], parts[cut:]
        start = _header_line(lines, table) if table else -1
        if start is None:
            continue
        if not rest:
            return start + 1
        nearest = start + 1 if nearest is None and start >= 0 else nearest
        key = r"\s*\.\s*".join(_name(k) for k in rest)
        for i in range(start + 1, len(lines)):
            if lines[i].startswith("["):
                break
            if re.match(rf"{key}\s*=", lines[i]):
                return i + 1
    return nearest


def _name(key: str) -> str:
    """A key as TOML may write it: bare, or in either quotes; a flag's key as max_bytes or max-bytes."""
    return rf'["\']?{re.escape(key).replace("_", "[-_]")}["\']?'


def _code(line: str) -> str:
    """A line without its comment (a ``#`` inside quotes is not one) and outer spaces."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == "#":
            return line[:i].strip()
    return line.strip()


def _header_line(lines: list[str], table: list[str]) -> int | None:
    pattern = re.compile(r"\[\s*" + r"\s*\.\s*".join(_name(t) for t in table) + r"\s*\]")
    for i, line in enumerate(lines):
        if pattern.fullmatch(line):
            return i
    return None
