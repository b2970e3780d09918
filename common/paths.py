"""Names on disk that two daemons agree on: safe path components and UTC time stamps."""

from __future__ import annotations

from datetime import datetime, timezone


def safe_name(name: str) -> str:
    """A camera name or event id as one path component: no separators, nothing hidden."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "_"


def name_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the one reading of a comma-separated option."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def utc_stamp(ts_ns: int) -> str:
    """``20261121T051900.123Z``: sortable as text, the same order as in time."""
    dt = datetime.fromtimestamp(ts_ns / 1e9, timezone.utc)
    return dt.strftime("%Y%m%dT%H%M%S.") + f"{dt.microsecond // 1000:03d}Z"


def utc_day(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, timezone.utc).strftime("%Y-%m-%d")
