"""Socket helpers: one way to make, bind and close a camwire socket.

Every socket is created by the thread that uses it, with its options set before bind/connect
and a bounded linger, so a daemon never hangs at exit on a peer that went away.
"""

from __future__ import annotations

import zmq

LINGER_MS = 1000  # how long queued messages may still go out after close()


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
    for addr in _as_list(bind):
        sock.bind(addr)
    for addr in _as_list(connect):
        sock.connect(addr)
    return sock


def _as_list(addr: str | list[str] | None) -> list[str]:
    if addr is None:
        return []
    return [addr] if isinstance(addr, str) else list(addr)
