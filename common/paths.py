"""Names on disk that two daemons agree on: path components, UTC time stamps, paths checked
before a daemon starts (an unwritable one is the operator's to fix: one line, exit 2)."""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from camwire.common.sockets import OperatorError
from camwire.common.wire import CAMERA_NAME_PATTERN

CAMERA_NAME = re.compile(CAMERA_NAME_PATTERN)


def camera_name(text: str) -> str:
    """argparse type: a camera name as the wire allows it (``^[A-Za-z0-9_-]{1,64}$``), never renamed."""
    if not CAMERA_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"a camera name is 1 to 64 of A-Z a-z 0-9 _ -, not {text!r}")
    return text


def safe_name(name: str) -> str:
    """A camera name or event id as one path component. A name of ``A-Za-z0-9_.-`` (every camera
    name, every event id) is itself; anything else is %-escaped, so two names never share a
    folder and nothing is hidden or climbs out (``..``)."""
    if not name:
        return "%"  # quote() never makes a lone "%", so no other name maps here
    out = quote(name, safe="-_.")
    return "%2E" + out[1:] if out.startswith(".") else out


def name_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the one reading of a comma-separated option."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def writable_dir(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` as a folder this process can write into, made if missing; else OperatorError
    naming the flag and the path (read-only, not a folder, no permission)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OperatorError(f"{flag} {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OperatorError(f"{flag} {folder}: cannot write there: {exc.strerror or exc}") from None
    return folder


def writable_file(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` as a file this process can create or append to (its folder made if missing)."""
    file = Path(path)
    if file.is_dir():
        raise OperatorError(f"{flag} {file}: is a folder, not a file")
    try:
        writable_dir(file.parent, flag)
    except OperatorError as exc:
        raise OperatorError(f"{flag} {file}: cannot write there ({str(exc).removeprefix(flag + ' ')})") from None
    if file.exists() and not os.access(file, os.W_OK):
        raise OperatorError(f"{flag} {file}: cannot write there: permission denied")
    return file


def utc_stamp(ts_ns: int) -> str:
    """``20261121T051900.123Z``: sortable as text, the same order as in time."""
    dt = datetime.fromtimestamp(ts_ns / 1e9, timezone.utc)
    return dt.strftime("%Y%m%dT%H%M%S.") + f"{dt.microsecond // 1000:03d}Z"


def utc_day(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, timezone.utc).strftime("%Y-%m-%d")
