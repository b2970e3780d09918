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
from typing import Any, Callable, Protocol

import zmq
from zmq.utils.monitor import parse_monitor_message, recv_monitor_message

LINGER_MS = 1000  # how long queued messages may still go out after close()
# a failed handshake's monitor event -> the reason it is counted under (common.curve)
HANDSHAKE_REASONS = {zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth",  # a key not listed: refused by the ZAP handler
                     zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",  # no key, a wrong server key, not ZeroMQ
                     zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "failed"}
# connecting again after a refused handshake (PeerWatch): 1 s doubling to 10 s. libzmq itself
# retries a connection that was made and then dropped every RECONNECT_IVL (100 ms), whatever
# RECONNECT_IVL_MAX says (each retry is a new connecter, its backoff started afresh), so a client
# with a wrong server key would handshake about 7 times a second for ever: PeerWatch disconnects
# a refused address at once and connects it again itself, on this backoff.
RETRY_FIRST_S, RETRY_CAP_S = 1.0, 10.0
# a TCP connect that fails (nothing listens there: a peer restarting, a host down) is retried by
# libzmq from 100 ms doubling to this cap; low, so a peer back from a restart is rejoined within
# about 2 s, and a refused connect costs its host nothing (a kernel RST)
RECONNECT_IVL_MAX_MS = 2000
HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
TRANSPORTS = ("tcp://", "ipc://", "inproc://", "pgm://", "epgm://", "udp://")


class OperatorError(Exception):
    """A mistake in what the operator gave (an address, a path): one line says what to fix."""


class Security(Protocol):
    """What a socket's links need from common.curve.Curve (kept apart: curve imports this module)."""

    def prepare(self, sock: zmq.Socket, addr: str, bind: bool, server: str | None,
                domain: bytes | None = None) -> None: ...


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


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, no brackets) is this host's loopback: localhost,
    127.0.0.0/8, ::1."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local(addr: str) -> bool:
    """Whether ``addr`` cannot leave this host: ipc:// and inproc://, or TCP to a loopback address.
    What shared memory between two daemons needs (common.shm)."""
    if addr.startswith(("ipc://", "inproc://")):
        return True
    if not addr.startswith("tcp://"):
        return False
    host = addr[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    return is_loopback(host.rsplit(";", 1)[-1])  # a source address first ("tcp://src;dst:port"): the destination counts


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
    curve: Security | None = None,
    server: str | None = None,
    immediate: bool = False,
    domain: bytes | None = None,
) -> zmq.Socket:
    """Create a socket, set its options, then bind and/or connect it. ``maxmsgsize``: a peer
    sending a larger message part is disconnected by ZeroMQ before the part is taken in.
    ``curve`` (common.curve.Curve) secures its tcp:// links; ``server`` names the daemon a
    connect reaches (common.curve.SERVER_OF), whose key it pins; ``domain``, the ZAP domain a
    bind checks its clients in (common.curve.SERVE_DOMAIN). ``immediate``: queue messages only
    towards connected peers (a send with none fails instead of waiting for one)."""
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
    if immediate:
        sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    if kind == zmq.ROUTER:
        # a send to a worker that has gone raises EHOSTUNREACH instead of vanishing silently
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if kind in (zmq.ROUTER, zmq.DEALER):
        # transport-level heartbeats close a connection to a host that vanished without a FIN
        sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
    try:
        for addr in _as_list(bind):
            attach(sock, addr, True, curve, server, domain)
        for addr in _as_list(connect):
            attach(sock, addr, False, curve, server)
    except OperatorError:
        sock.close(linger=0)
        raise
    return sock


def attach(sock: zmq.Socket, addr: str, bind: bool, curve: Security | None = None,
           server: str | None = None, domain: bytes | None = None) -> None:
    """Bind or connect ``sock`` to ``addr``, secured as ``curve`` says (``domain``: the ZAP
    domain of a bound socket whose clients are its own, common.curve); OperatorError names the address."""
    check_address(addr)
    if curve is not None:
        curve.prepare(sock, addr, bind, server, domain)
    method, verb = (sock.bind, "bind") if bind else (sock.connect, "connect to")
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
    warned about. Raises OperatorError as make_socket does, the socket closed.

    With ``curve`` its links are secured (``server`` names the daemon there); a handshake that
    fails (this daemon's key not allowed there, a wrong server key, no key where one is wanted)
    is logged once per address and given to ``failed(address, reason)`` each time, for a counter.
    The address is then disconnected and connected again after RETRY_FIRST_S, doubling to
    RETRY_CAP_S while it keeps refusing: a key listed there later gets in without a restart, and
    a refused client costs its server one handshake per RETRY_CAP_S, not ten a second."""

    def __init__(self, sock: zmq.Socket, addrs: str | list[str], log, after_s: float = 5.0,
                 curve: Security | None = None, server: str | None = None,
                 failed: Callable[[str, str], Any] | None = None) -> None:
        self.log, self.after_s, self.failed = log, after_s, failed
        self.forget: Callable[[], Any] | None = None  # set by a poll loop that reads the monitor (common.daemon)
        self.sock, self.curve, self.server = sock, curve, server
        self.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
                                               | HANDSHAKE_FAILED)
        now = time.monotonic()
        self.peers = {addr: _Peer(since=now) for addr in _as_list(addrs)}
        try:
            for addr in self.peers:
                attach(sock, addr, False, curve, server)
        except OperatorError:
            self.close()
            sock.close(linger=0)
            raise

    def on_monitor(self, parts: list) -> None:
        """One message of :attr:`monitor` (bytes or zmq.Frames), from a poll loop: a refused
        handshake is let go at once, before libzmq's own 100 ms retries pile up."""
        self._event(parse_monitor_message([p.bytes if hasattr(p, "bytes") else p for p in parts]))

    def check(self) -> bool:
        """Read the socket's events and warn about silent addresses; True while every address
        has a peer."""
        while self.monitor.poll(0):
            self._event(recv_monitor_message(self.monitor))
        now = time.monotonic()
        for addr, peer in self.peers.items():
            if peer.refused and peer.retry_at is not None and now >= peer.retry_at:
                peer.retry_at = None
                self._detach(addr)
                attach(self.sock, addr, False, self.curve, self.server)
            if not peer.connected and not peer.warned and now - peer.since >= self.after_s:
                self.log.warning("no answer from peer; is the address right and the daemon there?", address=addr,
                                 waited_s=round(now - peer.since, 1))
                peer.warned = True
        return all(p.connected for p in self.peers.values())

    def _event(self, msg: dict[str, Any]) -> None:
        endpoint = msg["endpoint"].decode(errors="replace")
        peer = self.peers.get(endpoint)
        if peer is None:  # an endpoint the socket was not given (an accepted peer): not ours to judge
            return
        if msg["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if peer.warned or peer.refused:
                self.log.info("peer answered", address=endpoint)
            peer.connected, peer.warned, peer.refused = True, False, False
        elif msg["event"] & HANDSHAKE_FAILED:
            reason = HANDSHAKE_REASONS.get(msg["event"], "failed")
            if self.failed is not None:
                self.failed(endpoint, reason)
            if peer.retry_at is not None:  # already given up until its retry (a late event)
                return
            if not peer.refused:
                self.log.error("handshake with peer failed: is this daemon's public key in its --curve-clients, "
                               "and the server key in --curve-servers its own?", address=endpoint, reason=reason,
                               retry_s=RETRY_FIRST_S)
                peer.retry_s = RETRY_FIRST_S
            # libzmq gives an address up after some refusals (auth, no key) and retries others
            # every 100 ms (a wrong server key): either way it is let go now and connected
            # again on the backoff, so a key listed there later (and a reload) gets in
            self._detach(endpoint)
            peer.refused, peer.retry_at = True, time.monotonic() + peer.retry_s
            peer.retry_s = min(RETRY_CAP_S, peer.retry_s * 2)
        elif msg["event"] == zmq.EVENT_DISCONNECTED:
            peer.connected, peer.since = False, time.monotonic()

    def _detach(self, addr: str) -> None:
        """Disconnect ``addr`` now. With linger 0: messages queued for a refused peer never go, and
        while a disconnect lingers on them libzmq goes on reconnecting every 100 ms."""
        linger = self.sock.getsockopt(zmq.LINGER)
        self.sock.setsockopt(zmq.LINGER, 0)  # libzmq reads it as the disconnect is made
        try:
            self.sock.disconnect(addr)
        except zmq.ZMQError:  # already gone from the socket's endpoints
            pass
        finally:
            self.sock.setsockopt(zmq.LINGER, linger)

    def close(self) -> None:
        if self.forget is not None:
            self.forget()
        self.monitor.close(linger=0)


@dataclass
class _Peer:
    """One address of a :class:`PeerWatch`: since when it has been without a handshake."""

    since: float
    connected: bool = False
    warned: bool = False
    refused: bool = False  # its last handshake failed (said once until one succeeds)
    retry_at: float | None = None  # when to connect again after a refused handshake
    retry_s: float = 1.0
