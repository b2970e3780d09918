"""Which of several daemons owns a camera, decided by each process alone: rendezvous (highest
random weight) hashing of the camera's name over the daemons' addresses.

Nothing goes over the wire: every process given the same addresses (in any order, written the
same way) picks the same owner for a camera, with no coordination and no shared state. Adding or
removing one address moves only the cameras that address gains or loses (about 1/N of them),
never reshuffling the rest. The classifier workers use it to send each camera's results, status,
eos and pool account to the one sink that owns the camera (classifier.sinks).
"""

from __future__ import annotations

import hashlib
from typing import Sequence


def weight(node: str, key: str) -> int:
    """A stable pseudo-random weight of ``key`` at ``node``: the same in every process and release
    (never Python's ``hash``, which is salted per process)."""
    digest = hashlib.blake2b(f"{node}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, nodes: Sequence[str]) -> str:
    """The node of ``nodes`` that owns ``key``: the one of highest weight (ties, vanishingly rare,
    go to the first in sorted order, so the order ``nodes`` are given in never matters)."""
    if not nodes:
        raise ValueError("no nodes to own anything")
    return max(sorted(nodes), key=lambda node: weight(node, key))
