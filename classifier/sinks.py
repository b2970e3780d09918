"""A classifier worker's sinks (``--sink``, one address or several; common.sinks routes each
camera's messages to the sink that owns it) and what a worker sends them:

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

from camwire.common import sinks as common_sinks
from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.daemon import Daemon
from camwire.common.sinks import sink_of

# results queued while a sink is away; past it they are dropped, counted. A result with a
# detection carries its frame's pixels (0.3 MB at 416 px, 6.2 MB at 1080p raw) or, to a sink on
# this host, holds its frame's shared-memory slot, so this bounds what a worker holds for a sink
# that is gone
SINK_HWM = 300


class Sinks(common_sinks.Sinks):
    """The worker's PUSH sockets to every sink; a message one does not take is counted dropped."""

    def __init__(self, daemon: Daemon, addrs: list[str], counters: Counters) -> None:
        super().__init__(daemon, addrs, sndhwm=SINK_HWM, linger=5000)
        self.counters = counters

    def send_to(self, addr: str, parts: list[Any]) -> bool:
        if super().send_to(addr, parts):
            return True
        self.counters.add("dropped", "sink_full")
        return False

    def workers(self, msg: wire.Workers, raw: bytes) -> None:
        """The ventilator's pool report: each camera's parts to its sink, the rest to every sink."""
        if len(self.addrs) == 1:
            self.send_to(self.addrs[0], [raw])
            return
        for addr, part in split(msg, self.addrs).items():
            self.send_to(addr, [wire.pack(part)])


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
