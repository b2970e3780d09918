"""HTTP requests with a deadline for the whole answer, whatever the server does.

A socket timeout bounds each read, not a request: a server that sends one byte a second, a
header line that never ends, or a body announced and trickled never lets a read time out. Here
every socket a request opens (or reuses) is handed to its :class:`Deadline`, whose timer shuts the
socket down when the time is up; the read blocked on it, in whichever phase (TLS, status line,
headers, body), returns at once, and the request fails with ``expired`` set. The timer shuts a
duplicate of the socket's descriptor, kept until the request is over, so it can never reach a
descriptor the request has closed and something else has been given since.

:func:`deadline_session` is a requests Session whose connections do this; :meth:`Deadline.start`
arms it around one request (one thread at a time, the camera's).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Deadline:
    """One request's time limit at a time: :meth:`start` before it, :meth:`stop` after it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []  # duplicates of the request's sockets, closed by stop()
        self._timer: threading.Timer | None = None
        self.armed = False
        self.expired = False

    def start(self, seconds: float) -> None:
        with self._lock:
            self.armed, self.expired = True, False
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        """The request is over: the timer is cancelled and the duplicates closed."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self.armed = False
            socks, self._socks = self._socks, []
        for sock in socks:
            sock.close()

    def watch(self, sock: socket.socket | None) -> None:
        """A socket the running request reads from (a new connection or a kept-alive one)."""
        if sock is None:
            return
        with self._lock:
            if not self.armed:
                return
            dup = socket.socket(fileno=os.dup(sock.fileno()))  # an SSL socket's too: the same TCP connection
            self._socks.append(dup)
            if self.expired:
                _shut(dup)

    def _cut(self) -> None:
        with self._lock:
            if not self.armed:
                return
            self.expired = True
            for sock in self._socks:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: never an SSL object's state
    except OSError:
        pass  # already closed by the peer: the read has ended anyway


def deadline_session(deadline: Deadline) -> requests.Session:
    """A Session whose every connection reports its socket to ``deadline``."""
    session = requests.Session()
    adapter = _Adapter(deadline)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _watched(base: Any, deadline: Deadline) -> Any:
    """``base`` (urllib3's HTTP or HTTPS connection) reporting its socket: a new one as soon as
    TCP has connected (before TLS), a kept-alive one when a request starts on it."""

    class Watched(base):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            deadline.watch(sock)
            return sock

        def request(self, *args: Any, **kwargs: Any) -> None:
            deadline.watch(self.sock)
            super().request(*args, **kwargs)

    return Watched


class _Adapter(HTTPAdapter):
    def __init__(self, deadline: Deadline) -> None:
        self._deadline = deadline
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        http = type("Pool", (HTTPConnectionPool,), {"ConnectionCls": _watched(HTTPConnection, self._deadline)})
        https = type("Pool", (HTTPSConnectionPool,), {"ConnectionCls": _watched(HTTPSConnection, self._deadline)})
        self.poolmanager.pool_classes_by_scheme = {"http": http, "https": https}
