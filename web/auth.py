"""Who may use the web console: a token from the config, and sessions made from it.

The policy, in one place:

- Bound to a loopback address with no token set, anyone on this host may read, reload and mark
  review items: a reload only makes the daemons read the owner's own file again, so it changes
  nothing the owner did not write, and a mark only says what someone has looked at ("show
  reviewed" brings any item back). Any other write (a camera's switches: they stop detection or
  recording) needs the token, so without one it is refused with what to set.
- With a token set (``[web] token = "${CAMWIRE_WEB_TOKEN}"``; required before ``--bind`` may name
  anything but loopback), every API call, medium and live stream needs it: as
  ``Authorization: Bearer TOKEN`` (scripts), or as the session cookie that ``POST /api/login``
  sets when given the token (browsers). The pages themselves (HTML, JS, CSS) hold nothing secret
  and are served to anyone; they ask for the token in a form.
- With a token set, or bound beyond loopback (which needs one), a reload needs the token too.
- The cookie holds a random session id, never the token; it is HttpOnly and SameSite=Strict, so no
  other site's page can use it, and a write with an ``Origin`` of another site is refused too.
- Every request to the API, media or live stream, the WebSocket included, must come from this
  console's own pages: an ``Origin`` of any other site (another port counts) is refused, so no
  page the operator opens elsewhere can read the cameras through the operator's browser. Bound to
  loopback, a ``Host`` that is not a loopback name is refused too (DNS rebinding).
- The token is never in a page, a URL or a log. Wrong tokens (a login or a Bearer header) are
  counted per client address; past ``MAX_FAILURES`` in ``FAILURE_WINDOW_S`` that address is refused
  (429) until the window has passed, so guessing is slow and no stranger locks out everyone.
- A reload that changes the token ends every session made with the old one.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass, field

from camwire.common.sockets import is_loopback

COOKIE = "camwire_session"
SESSION_S = 12 * 3600.0
MAX_SESSIONS = 1024
MAX_FAILURES = 10
FAILURE_WINDOW_S = 60.0
# writes open on a loopback bind without a token: a reload only re-reads the owner's file, and a
# review mark only says what someone has looked at. A switch can stop detection or recording: the token.
LOOPBACK_OPEN = ("/api/reload", "/api/review/reviewed")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_bind(bind: str, token: str | None) -> None:
    """Refuse (ValueError naming the flags) a console reachable from other hosts without a token."""
    if not is_loopback(bind) and not token:
        raise ValueError(f"--bind {bind}: the console would be reachable from other hosts; set a token first "
                         f"([web] token = \"${{CAMWIRE_WEB_TOKEN}}\", or --token)")


def change_allowed(path: str, token_set: bool, bind: str) -> bool:
    """Whether a write to ``path`` (its session already checked) may go on: with a token set,
    yes (the token or its session came with it); without one, only a reload or a review mark,
    and only on a loopback bind."""
    return token_set or (path in LOOPBACK_OPEN and is_loopback(bind))


@dataclass
class Auth:
    token: str | None
    sessions: dict[str, float] = field(default_factory=dict)  # session id -> expiry (monotonic)
    failures: dict[str, list[float]] = field(default_factory=dict)  # client -> times of recent wrong tokens
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def required(self) -> bool:
        return bool(self.token)

    def token_ok(self, given: str | None) -> bool:
        return bool(self.token) and given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def set_token(self, token: str | None) -> None:
        """A reload's token; a changed one ends every session made with the old."""
        with self._lock:
            if token != self.token:
                self.sessions.clear()
            self.token = token

    def failed(self, client: str) -> None:
        """Count a wrong token from ``client`` (an address)."""
        with self._lock:
            if len(self.failures) >= MAX_SESSIONS and client not in self.failures:
                self._forget_failures(time.monotonic())
            self.failures.setdefault(client, []).append(time.monotonic())

    def login(self, given: str | None, client: str) -> str | None:
        """A new session id for the right token; None (counted against ``client``) for a wrong one."""
        now = time.monotonic()
        if not self.token_ok(given):
            self.failed(client)
            return None
        with self._lock:
            self._expire(now)
            if len(self.sessions) >= MAX_SESSIONS:  # the oldest session makes room
                del self.sessions[min(self.sessions, key=self.sessions.__getitem__)]
            sid = secrets.token_urlsafe(32)
            self.sessions[sid] = now + SESSION_S
            return sid

    def locked_out(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self.failures.get(client, ()) if now - t < FAILURE_WINDOW_S]
            if recent:
                self.failures[client] = recent
            else:
                self.failures.pop(client, None)
            return len(recent) >= MAX_FAILURES

    def _forget_failures(self, now: float) -> None:
        """Bounded memory: clients whose failures are all past the window, or else the oldest half."""
        for client in [c for c, ts in self.failures.items() if now - ts[-1] >= FAILURE_WINDOW_S]:
            del self.failures[client]
        if len(self.failures) >= MAX_SESSIONS:
            for client in sorted(self.failures, key=lambda c: self.failures[c][-1])[:len(self.failures) // 2]:
                del self.failures[client]

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
        then only loopback can reach the console, and writes but a reload are refused:
        :func:`change_allowed`)."""
        if not self.required:
            return True
        return self.token_ok(bearer) or self.session_ok(sid)

    def _expire(self, now: float) -> None:
        for sid in [s for s, expiry in self.sessions.items() if expiry < now]:
            del self.sessions[sid]


def same_origin(origin: str | None, scheme: str, host: str) -> bool:
    """No Origin (a script, not a browser page), or this console's own."""
    return origin is None or origin == f"{scheme}://{host}"


def host_ok(host: str, bind: str) -> bool:
    """Bound to loopback, only a loopback name may be asked for: a page whose DNS name was rebound
    to 127.0.0.1 sends its own name, and is refused."""
    if not is_loopback(bind):
        return True
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return is_loopback(name.strip("[]"))


def bearer_of(header: str | None) -> str | None:
    if header and header.startswith("Bearer "):
        return header[len("Bearer "):].strip() or None
    return None
