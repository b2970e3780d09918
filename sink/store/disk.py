"""What the sink does when its disk fails it: count, log once per interval, keep delivering.

A full disk (ENOSPC), a read-only remount or a quota must never cost an event on PUB, MQTT or
the webhook, nor crash the sink into a restart loop: every failed write is counted under
``write_errors/<what>`` (``events``, ``snapshots``, ``status_db``), logged once per interval
with a count (common.logs.RepeatLimiter), and remembered for the ``sink`` row of status.db.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter


class WriteErrors:
    """Counts and reports failed writes; ``last`` is the newest, for ``camwire status``."""

    def __init__(self, counters: Counters, repeats: RepeatLimiter) -> None:
        self.counters, self.repeats = counters, repeats
        self.last: str | None = None
        self.last_ts: float | None = None

    def __call__(self, what: str, exc: BaseException) -> None:
        self.counters.add("write_errors", what)
        self.last, self.last_ts = f"{what}: {_describe(exc)}"[:500], time.time()
        self.repeats(f"write:{what}", "write failed; counted, events are still delivered", level="error",
                     what=what, error=_describe(exc))

    def totals(self) -> dict[str, int]:
        return dict(self.counters.snapshot().get("write_errors", {}))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f" ({exc.filename})" if exc.filename else "")
    return f"{type(exc).__name__}: {exc}"


def free_fraction(path: Path) -> float | None:
    """The share of ``path``'s volume still free for an unprivileged writer (None: cannot tell)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail / st.f_blocks if st.f_blocks else None
