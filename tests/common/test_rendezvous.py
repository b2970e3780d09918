"""Rendezvous hashing (common.rendezvous): one owner per name, the same whatever order the nodes are
given in, shares about even, and adding a node moves only what the new node takes."""

from __future__ import annotations

from camwire.common.rendezvous import owner


def test_a_camera_has_one_owner_whatever_the_order_and_few_move_when_a_sink_is_added() -> None:
    sinks = ["tcp://s1:5557", "tcp://s2:5557", "tcp://s3:5557"]
    cameras = [f"cam{i}" for i in range(1000)]
    before = {c: owner(c, sinks) for c in cameras}
    assert before == {c: owner(c, list(reversed(sinks))) for c in cameras}
    shares = [list(before.values()).count(s) for s in sinks]
    assert min(shares) > 250  # about a third each
    after = {c: owner(c, [*sinks, "tcp://s4:5557"]) for c in cameras}
    moved = [c for c in cameras if after[c] != before[c]]
    assert all(after[c] == "tcp://s4:5557" for c in moved)  # only to the new sink: nothing else reshuffles
    assert 150 < len(moved) < 350
