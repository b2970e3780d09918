"""A classifier worker's sinks (``--sink``, one address or several): one PUSH per sink, and every
message sent to the sink that owns its camera.

A PUSH connected to two sinks would round-robin: each camera's results split between them,
tracks broken and events told twice. So each sink owns a set of cameras, chosen by rendezvous
hashing of the camera's name over the sorted sink addresses (common.rendezvous): every worker
given the same list picks the same sink for a camera, with nothing said between them. What goes
over the wire is unchanged, only where it goes:

  - ``result`` (one per frame), and the per-camera messages a worker passes on from its
    ventilators, ``status``, ``eos`` and ``motion``: to the camera's sink only;
  - ``workers`` (the ventilator's pool report): its per-camera parts (``accounts``, ``backlog``,
    ``unserved``) each to the camera's sink, and what is not per camera (the workers' table, the
    ventilator's refused handshakes) to every sink. With one sink it goes on unchanged.

Every send is non-blocking; a sink away for hours costs counted drops (``dropped/sink_full``).
"""

from __future__ import annotations

from typing import Any

import msgspec
import zmq

from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.curve import SERVER_OF
from camwire.common.daemon import Daemon
from camwire.common.rendezvous import owner
from camwire.common.sockets import PeerWatch, is_local, send_nowait

# results queued while a sink is away; past it they are dropped, counted. A result with a
# detection carries its frame's pixels (0.3 MB at 416 px, 6.2 MB at 1080p raw) or, to a sink on
# this host, holds its frame's shared-memory slot, so this bounds what a worker holds for a sink
# that is gone
SINK_HWM = 300


class Sinks:
    """The PUSH sockets to every sink (connected, watched: a wrong address is warned about) and the
    choice of each camera's sink."""

    def __init__(self, daemon: Daemon, addrs: list[str], counters: Counters) -> None:
        self.addrs = sorted(dict.fromkeys(addrs))  # the same list in every worker, however it was written
        self.counters = counters
        self.socks = {addr: daemon.socket(zmq.PUSH, sndhwm=SINK_HWM, linger=5000) for addr in self.addrs}
        self.peers: list[PeerWatch] = [daemon.peer_watch(sock, addr, SERVER_OF["sink"])
                                       for addr, sock in self.socks.items()]

    def local(self) -> bool:
        """Whether every sink is on this host: a result's pixels then go raw (a copy costs less than
        any codec), else LZ4."""
        return all(is_local(addr) for addr in self.addrs)

    def of(self, camera: str) -> str:
        """The address of the sink that owns ``camera``."""
        return sink_of(camera, self.addrs)

    def send(self, camera: str, parts: list[Any]) -> bool:
        """A result or a camera's message, to the camera's sink; False if it was dropped."""
        return self._send(self.socks[self.of(camera)], parts)

    def workers(self, msg: wire.Workers, raw: bytes) -> None:
        """The ventilator's pool report: each camera's parts to its sink, the rest to every sink."""
        if len(self.addrs) == 1:
            self._send(self.socks[self.addrs[0]], [raw])
            return
        for addr, part in split(msg, self.addrs).items():
            self._send(self.socks[addr], [wire.pack(part)])

    def _send(self, sock: zmq.Socket, parts: list[Any]) -> bool:
        if not send_nowait(sock, parts):
            self.counters.add("dropped", "sink_full")
            return False
        return True


def sink_of(camera: str, addrs: list[str]) -> str:
    """The sink of ``addrs`` (sorted) that owns ``camera``."""
    return addrs[0] if len(addrs) == 1 else owner(camera, addrs)


def split(msg: wire.Workers, addrs: list[str]) -> dict[str, wire.Workers]:
    """The ventilator's pool report as each sink of ``addrs`` gets it: the workers' table and
    refusals whole, the per-camera parts (accounts, backlog, unserved) of its own cameras only."""
    accounts: dict[str, dict[str, wire.PoolAccount]] = {addr: {} for addr in addrs}
    backlog: dict[str, dict[str, int]] = {addr: {} for addr in addrs}
    unserved: dict[str, list[wire.Unserved]] = {addr: [] for addr in addrs}
    for camera, account in msg.accounts.items():
        accounts[sink_of(camera, addrs)][camera] = account
    for camera, n in msg.backlog.items():
        backlog[sink_of(camera, addrs)][camera] = n
    for u in msg.unserved:
        unserved[sink_of(u.camera, addrs)].append(u)
    return {addr: msgspec.structs.replace(msg, accounts=accounts[addr], backlog=backlog[addr], unserved=unserved[addr])
            for addr in addrs}
