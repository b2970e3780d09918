"""Who was refused: the peer of each failed CURVE handshake on a socket a daemon binds.

libzmq's monitor names only the local endpoint of a failed handshake. The peer comes from:

- the ZAP handler, for a key it refused (reason ``auth``): the peer's IP address, and the key's
  fingerprint (common.curve.fingerprint), always (common.curve.Curve.take_denied);
- the connection itself, for one refused before any client key was seen (no CURVE at all, a
  wrong server key: ``protocol``, ``failed``): the monitor's ``accepted`` event carries the
  connection's file descriptor, whose peer is read (getpeername) as the event is handled. Best
  effort: on a fast link the connection may be gone by then, and the peer is then ``unknown``.

A handshake failure is followed on the same monitor by the connection's ``disconnected`` event,
which carries the same descriptor: that pairs the failure with its ``accepted`` peer.

Peers are counted apart up to MAX_PEERS per daemon (:class:`PeerNames`); the ones after that are
counted as ``other``, so strangers cannot grow a daemon's counters, metrics or status.
"""

from __future__ import annotations

import os
import socket
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import zmq

from camwire.common.sockets import HANDSHAKE_FAILED, HANDSHAKE_REASONS

EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILED
UNKNOWN = "unknown"  # a peer whose address could not be read
NO_KEY = "-"  # no client key seen (refused before CURVE's INITIATE, or no CURVE at all)
MAX_PEERS = 32  # distinct (address, key) named per daemon; later ones are counted as OTHER
OTHER = "other"
MAX_OPEN = 1024  # accepted connections remembered per socket (a connection that stays is forgotten first)


@dataclass(frozen=True)
class Refusal:
    """One refused handshake: on which bound socket, why (common.sockets.HANDSHAKE_REASONS), the
    peer's IP address (or UNKNOWN) and the fingerprint of the key it offered (or NO_KEY)."""

    socket: str
    reason: str
    peer: str = UNKNOWN
    key: str = NO_KEY


class RefusalWatch:
    """The monitor of one secured bound socket, turned into :class:`Refusal`s. Owned by the
    daemon's loop: feed each monitor message to :meth:`on_event`."""

    def __init__(self, sock: zmq.Socket, take_denied: Callable[[], tuple[str, str] | None]) -> None:
        self.monitor = sock.get_monitor_socket(EVENTS)
        self.take_denied = take_denied
        self.accepted: OrderedDict[int, str] = OrderedDict()  # open connection's fd -> its peer
        self.failed: tuple[str, str] | None = None  # (endpoint, reason) waiting for its disconnect

    def on_event(self, parts: list) -> list[Refusal]:
        """A monitor message (event and value, endpoint) -> the refusals it completes (0, 1, or 2
        where a failure came without its disconnect)."""
        head = parts[0].bytes if hasattr(parts[0], "bytes") else parts[0]
        event, value = int.from_bytes(head[:2], "little"), int.from_bytes(head[2:6], "little")
        endpoint = (parts[1].bytes if hasattr(parts[1], "bytes") else parts[1]).decode(errors="replace") \
            if len(parts) > 1 else "?"
        done: list[Refusal] = []
        if event == zmq.EVENT_ACCEPTED:
            self.accepted[value] = peer_of(value, endpoint)
            while len(self.accepted) > MAX_OPEN:
                self.accepted.popitem(last=False)
        elif event & HANDSHAKE_FAILED:
            if self.failed is not None:  # its disconnect never came: named as far as known
                done.append(self._refusal(*self.failed, UNKNOWN))
            self.failed = (endpoint, HANDSHAKE_REASONS.get(event, "failed"))
        elif event == zmq.EVENT_DISCONNECTED:
            peer = self.accepted.pop(value, UNKNOWN)
            if self.failed is not None:
                done.append(self._refusal(*self.failed, peer))
                self.failed = None
        return done

    def _refusal(self, endpoint: str, reason: str, peer: str) -> Refusal:
        if reason == "auth":  # the ZAP handler said no, and knows to whom: the same order of events
            denied = self.take_denied()
            if denied is not None:
                return Refusal(endpoint, reason, denied[0] or peer, denied[1] or NO_KEY)
        return Refusal(endpoint, reason, peer)

    def close(self) -> None:
        self.monitor.close(linger=0)


def peer_of(fd: int, endpoint: str) -> str:
    """The IP address at the other end of libzmq's connection ``fd``, accepted on ``endpoint``;
    UNKNOWN when it is closed already, or the descriptor is now something else (its local port
    is not the endpoint's). Reads a duplicate, never touches libzmq's own descriptor."""
    try:
        dup = os.dup(fd)
    except OSError:
        return UNKNOWN
    try:
        sock = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return UNKNOWN
    try:
        if not endpoint.endswith(f":{sock.getsockname()[1]}"):
            return UNKNOWN
        return str(sock.getpeername()[0])
    except (OSError, IndexError, TypeError):
        return UNKNOWN
    finally:
        sock.close()


class PeerNames:
    """At most MAX_PEERS distinct (address, key) named; any later one becomes (OTHER, OTHER)."""

    def __init__(self, cap: int = MAX_PEERS) -> None:
        self.cap, self.seen = cap, set[tuple[str, str]]()

    def name(self, peer: str, key: str) -> tuple[str, str]:
        if (peer, key) in self.seen:
            return peer, key
        if len(self.seen) < self.cap:
            self.seen.add((peer, key))
            return peer, key
        return OTHER, OTHER
