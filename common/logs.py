"""One structlog configuration for every daemon: console for people, JSON lines for machines.

Secrets never reach a log line: URLs have their passwords masked, and keys that name a secret
(api_key, password, token) are replaced before rendering.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog

SECRET_KEYS = re.compile(r"(api[_-]?key|password|passwd|secret|token)", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")


def redact_url(url: str) -> str:
    """``rtsp://admin:hunter2@cam/x`` -> ``rtsp://admin:***@cam/x``; query keys that name secrets too."""
    url = URL_WITH_PASSWORD.sub(r"\g<scheme>\g<user>:***@", url)
    parts = urlsplit(url)
    if parts.query and SECRET_KEYS.search(parts.query):
        query = "&".join(
            f"{k}=***" if SECRET_KEYS.search(k) else f"{k}={v}" if sep else k
            for k, sep, v in (item.partition("=") for item in parts.query.split("&"))
        )
        url = urlunsplit(parts._replace(query=query))
    return url


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url(value) if "://" in value else value
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v) for v in value)
    if isinstance(value, dict):
        return {k: "***" if SECRET_KEYS.search(str(k)) else _redact(v) for k, v in value.items()}
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: masks secrets in every key and value of a log line."""
    return {k: "***" if SECRET_KEYS.search(k) else _redact(v) for k, v in event_dict.items()}


def configure(daemon: str, level: str | None = None, json: bool | None = None) -> structlog.stdlib.BoundLogger:
    """Configure structlog once at start-up and return the daemon's logger, bound with ``daemon=``.

    ``json`` defaults to JSON lines when stderr is not a terminal (systemd's journal, a file) and
    to coloured console output when it is; ``CAMWIRE_LOG_FORMAT=json|console`` overrides.
    """
    level = (level or os.environ.get("CAMWIRE_LOG_LEVEL", "info")).upper()
    fmt = os.environ.get("CAMWIRE_LOG_FORMAT")
    if json is None:
        json = fmt == "json" if fmt else not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if json else structlog.processors.StackInfoRenderer(),
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().bind(daemon=daemon)


class RepeatLimiter:
    """Logs a repeated error once per ``interval_s`` per distinct key, with how often it came.

    A detector failing on every frame, or a peer sending garbage, gives one line a minute with a
    count (and a traceback only the first time), not a line per message.
    """

    def __init__(self, log: Any, interval_s: float = 60.0, max_keys: int = 1000) -> None:
        self.log, self.interval_s, self.max_keys = log, interval_s, max_keys
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last logged, repeats since)

    def __call__(self, key: str, event: str, level: str = "warning", exc_info: bool = False, **kw: Any) -> bool:
        """Log ``event`` unless ``key`` was logged less than ``interval_s`` ago; True when logged."""
        import time

        now = time.monotonic()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is None and len(self._seen) >= self.max_keys:
            self._seen.clear()  # bounded: hostile input cannot grow this
        repeats = last[1] if last else 0
        getattr(self.log, level)(event, **kw, **({"repeated": repeats, "over_s": self.interval_s} if repeats else {}),
                                 **({"exc_info": True} if exc_info and last is None else {}))
        self._seen[key] = (now, 0)
        return True
