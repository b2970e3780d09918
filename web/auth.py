"""Who may use the web console: a token from the config, and sessions made from it.

The policy, in one place:

- Bound to a loopback address with no token set, anyone on this host may read; no one may write
  (reload, delete): a write always needs the token, so without one it is refused with what to set.
- With a token set (``[web] token = "${CAMWIRE_WEB_TOKEN}"``; required before ``--bind`` may name
  anything but loopback), every API call, medium and live stream needs it: as
  ``Authorization: Bearer TOKEN`` (scripts), or as the session cookie that ``POST /api/login``
  sets when given the token (browsers). The pages themselves (HTML, JS, CSS) hold nothing secret
  and are served to anyone; they ask for the token in a form.
- The cookie holds a random session id, never the token; it is HttpOnly and SameSite=Strict, so no
  other site's page can use it, and a write with an ``Origin`` of another site is refused too.
- The token is never in a page, a URL or a log. Failed logins are counted; past ``MAX_FAILURES``
  in ``FAILURE_WINDOW_S`` the next are refused (429) until the window has passed.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "camwire_session"
SESSION_S = 12 * 3600.0
MAX_SESSIONS = 1024
MAX_FAILURES = 10
FAILURE_WINDOW_S = 60.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(bind: str, token: str | None) -> None:
    """Refuse (ValueError naming the flags) a console reachable from other hosts without a token."""
    if not is_loopback(bind) and not token:
        raise ValueError(f"--bind {bind}: the console would be reachable from other hosts; set a token first "
                         f"([web] token = \"${{CAMWIRE_WEB_TOKEN}}\", or --token)")


@dataclass
class Auth:
    token: str | None
    sessions: dict[str, float] = field(default_factory=dict)  # session id -> expiry (monotonic)
    failures: list[float] = field(default_factory=list)  # monotonic times of recent failed logins
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def required(self) -> bool:
        return bool(self.token)

    def token_ok(self, given: str | None) -> bool:
        return bool(self.token) and given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def login(self, given: str | None) -> str | None:
        """A new session id for the right token; None (counted) for a wrong one."""
        now = time.monotonic()
        with self._lock:
            if not self.token_ok(given):
                self.failures.append(now)
                return None
            self._expire(now)
            if len(self.sessions) >= MAX_SESSIONS:  # the oldest session makes room
                del self.sessions[min(self.sessions, key=self.sessions.__getitem__)]
            sid = secrets.token_urlsafe(32)
            self.sessions[sid] = now + SESSION_S
            return sid

    def locked_out(self) -> bool:
        now = time.monotonic()
        with self._lock:
            self.failures = [t for t in self.failures if now - t < FAILURE_WINDOW_S]
            return len(self.failures) >= MAX_FAILURES

    def logout(self, sid: str | None) -> None:
        with self._lock:
            self.sessions.pop(sid or "", None)

    def session_ok(self, sid: str | None) -> bool:
        if not sid:
            return False
        with self._lock:
            expiry = self.sessions.get(sid)
            if expiry is None or expiry < time.monotonic():
                self.sessions.pop(sid, None)
                return False
            return True

    def allowed(self, bearer: str | None, sid: str | None) -> bool:
        """A request that carries the token or a live session (always True when no token is set:
        then only loopback can reach the console, and writes are refused elsewhere)."""
        if not self.required:
            return True
        return self.token_ok(bearer) or self.session_ok(sid)

    def _expire(self, now: float) -> None:
        for sid in [s for s, expiry in self.sessions.items() if expiry < now]:
            del self.sessions[sid]


def bearer_of(header: str | None) -> str | None:
    if header and header.startswith("Bearer "):
        return header[len("Bearer "):].strip() or None
    return None
