"""Event ids: unique forever, and sorted as text in the order the events happened.

``<capture time, UTC, ns>-<camera>-<type>[-<n>]``, e.g. ``20261121T051900.123456789Z-door-detection``.
An extractor restarted mid-run starts its seq at 0 again, but never its capture clock, so ids
never repeat across its restarts; ``n`` tells apart two events of one camera and type at the same
nanosecond (tracked objects, issue 11). Across the sink's restarts, the ``n`` given and the state
each event told are kept in its ledger.db (sink.ledger): an extractor's repeated motion
state is known for one, and two results of one frame either side of a restart get two ids.
"""

from __future__ import annotations

from datetime import datetime, timezone


def event_id(ts_ns: int, camera: str, etype: str, n: int = 0) -> str:
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}.{nanos:09d}Z-{camera}-{etype}" + (f"-{n}" if n else "")
