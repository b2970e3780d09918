"""The sink's motion state: one motion_start and one motion_end per stretch, whatever the order
the extractor's messages arrive in through different workers, and however often they repeat."""

from __future__ import annotations

from camwire.sink.events import EventIds
from camwire.sink.motion_state import MotionStates
from camwire.common import wire

S = 1_000_000_000


def on(ts: int, seq: int = 1) -> wire.Motion:
    return wire.Motion(camera="c", active=True, ts_ns=ts * S, seq=seq, boxes=[(1.0, 2.0, 30.0, 40.0)])


def off(ts: int, started: int, seq: int = 9) -> wire.Motion:
    return wire.Motion(camera="c", active=False, ts_ns=ts * S, started_ns=started * S, seq=seq)


def told(states: MotionStates, *messages: wire.Motion) -> list[tuple[str, float]]:
    return [(e.type, e.ts) for m in messages for e in states.on_motion(m)]


def test_a_stretch_is_one_start_and_one_end_however_often_repeated() -> None:
    states = MotionStates(EventIds())
    got = told(states, on(10), on(10), on(10), off(15, 10), off(15, 10), on(20), off(22, 20))
    assert got == [("motion_start", 10), ("motion_end", 15), ("motion_start", 20), ("motion_end", 22)]
    assert states.counters.get("motion_messages", "c", "stale") == 3
    assert states.ended("c")


def test_an_end_before_its_start_tells_the_whole_stretch() -> None:
    states = MotionStates(EventIds())
    assert told(states, on(1), off(2, 1)) == [("motion_start", 1), ("motion_end", 2)]
    assert told(states, off(15, 10), on(10)) == [("motion_start", 10), ("motion_end", 15)]  # the start came late


def test_a_sink_that_comes_while_motion_is_off_says_nothing_until_it_starts() -> None:
    states = MotionStates(EventIds())
    assert told(states, off(15, 10)) == []
    assert told(states, on(20)) == [("motion_start", 20)]
    assert not states.ended("c")


def test_a_stretch_that_started_after_the_sink_is_told_whole_though_its_start_was_lost() -> None:
    # the sink started at 12 s: the stretch 10..15 was under way (silent), 20..25 began after it
    states = MotionStates(EventIds(), since_ns=12 * S)
    assert told(states, off(15, 10)) == []
    states = MotionStates(EventIds(), since_ns=12 * S)
    assert told(states, off(25, 20)) == [("motion_start", 20), ("motion_end", 25)]
    assert told(states, on(20)) == []  # the start, arriving late after all, changes nothing
    assert states.counters.get("motion_messages", "c", "stale") == 1
    states.cameras.pop("c")  # forgotten (idle), no ledger: the end's repeat when it is met again tells nothing
    assert told(states, off(25, 20)) == []


def test_events_carry_the_boxes_and_unique_ids() -> None:
    states = MotionStates(EventIds())
    start, = states.on_motion(on(10, seq=42))
    end, = states.on_motion(off(11, 10))
    assert start.seq == 42 and [d.box for d in start.detections] == [(1.0, 2.0, 30.0, 40.0)]
    assert start.detections[0].label == "motion" and end.detections == []
    assert start.id != end.id and wire.unpack(wire.pack(start)) == start
