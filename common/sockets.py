"""Socket helpers: one way to make, bind and close a camwire socket, and to send without waiting.

Every socket is created by the thread that uses it, with its options set before bind/connect
and a bounded linger, so a daemon never hangs at exit on a peer that went away. An address that
cannot work (in use, no ``tcp://``, a host that does not resolve) is an operator's mistake:
:class:`OperatorError`, one line naming the address, exit 2 (camwire.cli).
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass

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


def check_addresses(args: object, *dests: str) -> None:
    """Each address flag of ``args`` that is set (one address or a list) has a transport; for a
    command's ``check(args)``: ValueError naming the flag, as check-config prints it."""
    for dest in dests:
        value = getattr(args, dest, None)
        for addr in [value] if isinstance(value, str) else value or []:
            try:
                check_address(addr, f"--{dest.replace('_', '-')}")
            except OperatorError as exc:
                raise ValueError(str(exc)) from None


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
    maxmsgsize: int | None = None,
) -> zmq.Socket:
    """Create a socket, set its options, then bind and/or connect it. ``maxmsgsize``: a peer
    sending a larger message part is disconnected by ZeroMQ before the part is taken in."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, linger)
    if maxmsgsize is not None:
        sock.setsockopt(zmq.MAXMSGSIZE, maxmsgsize)
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
    """Tells when a connecting socket has not reached a peer: a wrong ``--push``/``--connect``/
    ``--subscribe`` address would otherwise drop (or never get) every frame without a word.
    ``addrs`` is every address the socket connects to (a SUB connects to many); the socket's
    monitor events name the endpoint, so each address is tracked apart. Owned by the socket's
    thread; call :meth:`check` from its loop. Warns once per address that has had no handshake
    for ``after_s`` (again after it answered and then went away), naming it, and says when it
    answers at last.

    It connects the socket itself (make it with no ``connect``): the monitor must be on before
    the first connect, or a handshake done in between is never seen and a right address is
    warned about. Raises OperatorError as make_socket does, the socket closed."""

    def __init__(self, sock: zmq.Socket, addrs: str | list[str], log, after_s: float = 5.0) -> None:
        self.log, self.after_s = log, after_s
        self.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        now = time.monotonic()
        self.peers = {addr: _Peer(since=now) for addr in _as_list(addrs)}
        try:
            for addr in self.peers:
                _attach(sock.connect, addr, "connect to")
        except OperatorError:
            self.close()
            sock.close(linger=0)
            raise

    def check(self) -> bool:
        """Read the socket's events and warn about silent addresses; True while every address
        has a peer."""
        while self.monitor.poll(0):
            msg = recv_monitor_message(self.monitor)
            endpoint = msg["endpoint"].decode(errors="replace")
            peer = self.peers.get(endpoint)
            if peer is None:  # an endpoint the socket was not given (an accepted peer): not ours to judge
                continue
            if msg["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if peer.warned:
                    self.log.info("peer answered", address=endpoint)
                peer.connected, peer.warned = True, False
            elif msg["event"] == zmq.EVENT_DISCONNECTED:
                peer.connected, peer.since = False, time.monotonic()
        now = time.monotonic()
        for addr, peer in self.peers.items():
            if not peer.connected and not peer.warned and now - peer.since >= self.after_s:
                self.log.warning("no answer from peer; is the address right and the daemon there?", address=addr,
                                 waited_s=round(now - peer.since, 1))
                peer.warned = True
        return all(p.connected for p in self.peers.values())

    def close(self) -> None:
        self.monitor.close(linger=0)


@dataclass
class _Peer:
    """One address of a :class:`PeerWatch`: since when it has been without a handshake."""

    since: float
    connected: bool = False
    warned: bool = False
