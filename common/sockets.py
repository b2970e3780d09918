"""Socket helpers: one way to make, bind and close a camwire socket, and to send without waiting.

Every socket is created by the thread that uses it, with its options set before bind/connect
and a bounded linger, so a daemon never hangs at exit on a peer that went away. An address that
cannot work (in use, no ``tcp://``, a host that does not resolve) is an operator's mistake:
:class:`OperatorError`, one line naming the address, exit 2 (camwire.cli).
"""

from __future__ import annotations

import errno
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

LINGER_MS = 1000  # how long queued messages may still go out after close()
TRANSPORTS = ("tcp://", "ipc://", "inproc://", "pgm://", "epgm://", "udp://")


class OperatorError(Exception):
    """A mistake in what the operator gave (an address, a path): one line says what to fix."""


def check_address(addr: str, flag: str = "") -> str:
    """Refuse an address without a transport (``localhost:5555``) before ZeroMQ sees it."""
    if not isinstance(addr, str) or not addr.startswith(TRANSPORTS):
        where = f"{flag} " if flag else ""
        raise OperatorError(f"{where}{addr!r}: an address like tcp://host:port or ipc:///run/camwire/x")
    return addr


def make_socket(
    ctx: zmq.Context,
    kind: int,
    *,
    bind: str | list[str] | None = None,
    connect: str | list[str] | None = None,
    sndhwm: int | None = None,
    rcvhwm: int | None = None,
    identity: bytes | None = None,
    linger: int = LINGER_MS,
) -> zmq.Socket:
    """Create a socket, set its options, then bind and/or connect it."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, linger)
    if sndhwm is not None:
        sock.setsockopt(zmq.SNDHWM, sndhwm)
    if rcvhwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    if kind == zmq.ROUTER:
        # a send to a worker that has gone raises EHOSTUNREACH instead of vanishing silently
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if kind in (zmq.ROUTER, zmq.DEALER):
        # transport-level heartbeats close a connection to a host that vanished without a FIN
        sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
    try:
        for addr in _as_list(bind):
            _attach(sock.bind, addr, "bind")
        for addr in _as_list(connect):
            _attach(sock.connect, addr, "connect to")
    except OperatorError:
        sock.close(linger=0)
        raise
    return sock


def _attach(method, addr: str, verb: str) -> None:
    check_address(addr)
    try:
        method(addr)
    except zmq.ZMQError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OperatorError(f"cannot bind {addr}: the address is in use (another daemon, or one still "
                                f"stopping, has it)") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise OperatorError(f"cannot bind {addr}: no such address on this host") from None
        raise OperatorError(f"cannot {verb} {addr}: {exc.strerror}") from None


def _as_list(addr: str | list[str] | None) -> list[str]:
    if addr is None:
        return []
    return [addr] if isinstance(addr, str) else list(addr)


def send_nowait(sock: zmq.Socket, parts: list, timeout_ms: int = 0, copy: bool = True) -> bool:
    """Send a message, waiting at most ``timeout_ms`` for room; False (never a hang) when there is
    none: the caller counts the drop. Every send in camwire goes through here or NOBLOCK."""
    if timeout_ms > 0 and not sock.poll(timeout_ms, zmq.POLLOUT):
        return False
    try:
        sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=copy)
        return True
    except zmq.Again:
        return False


class PeerWatch:
    """Tells when a connecting socket has not reached its peer: a wrong ``--push``/``--connect``
    address would otherwise drop every frame without a word. Owned by the socket's thread;
    call :meth:`check` from its loop. Warns once per address after ``after_s`` without a
    handshake, and says when the peer answers at last."""

    def __init__(self, sock: zmq.Socket, addr: str, log, after_s: float = 5.0) -> None:
        self.addr, self.log, self.after_s = addr, log, after_s
        self.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        self.since = time.monotonic()
        self.connected = False
        self.warned = False

    def check(self) -> bool:
        """Read the socket's events; True while the peer is reachable."""
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if self.warned:
                    self.log.info("peer answered", address=self.addr)
                self.connected, self.warned = True, False
            elif event == zmq.EVENT_DISCONNECTED:
                self.connected, self.since = False, time.monotonic()
        if not self.connected and not self.warned and time.monotonic() - self.since >= self.after_s:
            self.log.warning("no answer from peer; is the address right and the daemon there?", address=self.addr,
                             waited_s=round(time.monotonic() - self.since, 1))
            self.warned = True
        return self.connected

    def close(self) -> None:
        self.monitor.close(linger=0)
