"""A daemon's life: start-up, a main loop that checks a stop flag every tick, a bounded shutdown.

Why the signal handlers here take no lock: CPython runs a handler on the main thread between two
bytecodes, which can be inside ``threading.Event.wait`` or ``clear`` with the event's lock held.
A handler that then calls ``Event.set()`` waits for that lock on the thread that holds it, for
ever: the daemon never stops on SIGTERM (CI once saw an extractor ignore it). So a handler only
writes an attribute, and the main loop, which looks at least every tick, passes it on.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


BACKOFF_FIRST_S = 0.5
BACKOFF_CAP_S = 30.0


def backoff_delay(failures: int, first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_CAP_S) -> float:
    """Capped exponential backoff: 0.5, 1, 2, 4 ... 30 s after 1, 2, 3, 4 ... failures (a
    reconnect, a restart, a retry: every daemon waits this way)."""
    return min(cap, first * 2 ** max(0, failures - 1))


class StopFlag:
    """Set by SIGTERM or SIGINT (:meth:`handle`), or by :meth:`set` from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal: int | None = None

    def install(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle)
        return self

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        """The signal handler: lock-free (see the module's docstring). The main thread's next
        :meth:`is_set` or :meth:`wait` sets the event, which wakes the threads waiting on it."""
        self.signal = signum

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        if self.signal is not None and not self._event.is_set():
            self._event.set()  # never from a handler: this is the main loop looking
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking at once when the flag is set from another
        thread; a signal that comes meanwhile is seen at the end of the timeout (the main loop's
        waits are a tick at most)."""
        return self.is_set() or self._event.wait(timeout) or self.is_set()


class Hangup:
    """SIGHUP (:meth:`handle`), or a reload asked for by another thread (:meth:`request`);
    :meth:`take` on the main loop says whether one came since it last looked. A count, not an
    Event, for the same reason as StopFlag: a handler must take no lock."""

    def __init__(self) -> None:
        self._asked = 0
        self._taken = 0

    def handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.request()

    def request(self) -> None:
        self._asked += 1

    def take(self) -> bool:
        asked = self._asked  # read once: one that comes after this is taken on the next look
        if asked == self._taken:
            return False
        self._taken = asked
        return True
