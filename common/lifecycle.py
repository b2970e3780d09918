"""A daemon's life: start-up, a main loop that checks a stop flag every tick, a bounded shutdown."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopFlag:
    """Set by SIGTERM or SIGINT; the handler only sets the flag, the loop does the rest."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal: int | None = None

    def install(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal = signum
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking at once when the flag is set."""
        return self._event.wait(timeout)
