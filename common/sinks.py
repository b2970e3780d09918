"""Several sinks, each owning its cameras: one PUSH per sink (``--sink``, one address or several),
and every message about a camera sent to the sink that owns it.

A PUSH connected to two sinks would round-robin: a camera's messages split between them, tracks
broken, a switch set on a sink that never sees the camera. So each sink owns a set of cameras,
chosen by rendezvous hashing of the camera's name over the sorted sink addresses
(common.rendezvous): every daemon given the same list picks the same sink for a camera, with
nothing said between them. What goes over the wire is each daemon's own (a worker's results,
the recorder's events, the console's switches); this module only says where it goes.

Every send is non-blocking and says whether ZeroMQ took it; what a daemon does with a refusal (count
it, keep it for the next round, answer 503) is its own. The sockets belong to the daemon's loop.
"""

from __future__ import annotations

from typing import Any, Iterable

import zmq

from camwire.common import wire
from camwire.common.curve import SERVER_OF
from camwire.common.daemon import Daemon
from camwire.common.rendezvous import owner
from camwire.common.sockets import PeerWatch, is_local, send_nowait


def sink_of(camera: str, addrs: list[str]) -> str:
    """The sink of ``addrs`` (sorted) that owns ``camera``."""
    return addrs[0] if len(addrs) == 1 else owner(camera, addrs)


class Sinks:
    """The PUSH sockets to every sink (connected, watched: a wrong address is warned about) and the
    choice of each camera's sink. ``options``: the sockets' (sndhwm, linger, immediate)."""

    def __init__(self, daemon: Daemon, addrs: list[str], **options: Any) -> None:
        self.addrs = sorted(dict.fromkeys(addrs))  # the same list in every daemon, however it was written
        self.socks = {addr: daemon.socket(zmq.PUSH, **options) for addr in self.addrs}
        self.watches: dict[str, PeerWatch] = {addr: daemon.peer_watch(sock, addr, SERVER_OF["sink"])
                                              for addr, sock in self.socks.items()}

    @property
    def peers(self) -> list[PeerWatch]:
        return list(self.watches.values())

    def local(self) -> bool:
        """Whether every sink is on this host."""
        return all(is_local(addr) for addr in self.addrs)

    def of(self, camera: str) -> str:
        """The address of the sink that owns ``camera``."""
        return sink_of(camera, self.addrs)

    def connected(self) -> bool:
        """Whether any sink has a peer now."""
        return bool(self.reached())

    def reached(self) -> set[str]:
        """The sinks' addresses that have a peer now (read from any thread: a copy of each watch's peers)."""
        return {addr for addr, watch in self.watches.items() if any(p.connected for p in list(watch.peers.values()))}

    def send(self, camera: str, parts: list[Any]) -> bool:
        """``parts`` to the sink that owns ``camera``, without waiting; whether it was taken."""
        return self.send_to(self.of(camera), parts)

    def send_to(self, addr: str, parts: list[Any]) -> bool:
        return send_nowait(self.socks[addr], parts)

    def send_events(self, events: Iterable[wire.Event]) -> list[wire.Event]:
        """Each event to its camera's sink, in order, without waiting; those taken. A sink that
        refuses one (none connected, its queue full) is not asked again this round: its events
        wait, in order, for the next, while the other sinks' go on (a camera is always one sink's,
        so each camera's order holds)."""
        refused: set[str] = set()
        taken = []
        for event in events:
            addr = self.of(event.camera)
            if addr not in refused:
                if self.send_to(addr, [wire.pack(event)]):
                    taken.append(event)
                else:
                    refused.add(addr)
        return taken
