"""The sink's webhook: each event POSTed as JSON (the same bytes as its ``--events`` line) from a
background thread; a failed delivery (connection error, 5xx, 429) is retried with backoff,
``retries`` times, then counted as failed. A 4xx is not retried. At shutdown what is queued is
still sent, for up to ``drain_s`` seconds. It never holds up the sink: a bounded queue, counted
when full.
"""

from __future__ import annotations

import queue
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter

QUEUE_MAX = 10_000


def origin(url: str) -> str:
    """``https://hooks.example.com/T0/B0/secret`` -> ``https://hooks.example.com/…``: a webhook's
    path is often its secret, so only where it goes is ever logged."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/…"



class WebhookOutput(threading.Thread):
    """POSTs each event as JSON to ``url``, retrying failures with backoff."""

    def __init__(self, url: str, counters: Counters, log, retries: int = 5, timeout_s: float = 5.0,
                 backoff_s: float = 0.5, drain_s: float = 3.0) -> None:
        super().__init__(name="webhook", daemon=True)
        self.url, self.counters, self.log = url, counters, log.bind(webhook=origin(url))
        self.retries, self.timeout_s, self.backoff_s, self.drain_s = retries, timeout_s, backoff_s, drain_s
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._deadline: float | None = None  # set at close: give up retrying after it
        self.repeats = RepeatLimiter(self.log)  # a dead hook: one line a minute, with a count
        self.start()

    def send(self, event: wire.Event, body: bytes) -> None:
        try:
            self.queue.put_nowait(body)
        except queue.Full:
            self.counters.add("outputs", "webhook", "dropped")

    def run(self) -> None:
        while (body := self.queue.get()) is not None:
            self._deliver(body)

    def _deliver(self, body: bytes) -> None:
        for attempt in range(self.retries + 1):
            if attempt:
                self.counters.add("outputs", "webhook", "retried")
                delay = self.backoff_s * 2 ** (attempt - 1)
                if self._deadline is not None and time.monotonic() + delay > self._deadline:
                    break
                time.sleep(delay)  # this thread's only job is this delivery; nothing waits on it
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s):
                    self.counters.add("outputs", "webhook", "delivered")
                    return
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code != 429:
                    self.log.warning("webhook refused the event; not retried", status=exc.code)
                    break
                reason = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                reason = str(getattr(exc, "reason", exc))
            self.repeats(f"webhook:{reason}", "webhook delivery failed", attempt=attempt + 1, reason=reason)
        self.counters.add("outputs", "webhook", "failed")

    def close(self) -> None:
        self._deadline = time.monotonic() + self.drain_s
        self.queue.put(None)
        self.join(timeout=self.drain_s + self.timeout_s)
