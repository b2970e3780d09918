"""What the sink told outlives it (sink.ledger, in a real SQLite file): a sink started again on
the same data dir tells no change twice and gives no id twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from camwire.sink.events import EventIds, Events
from camwire.sink.ledger import MAX_IDS, Ledger
from camwire.sink.motion_state import MotionStates
from camwire.sink.recording_state import PAUSED, RESUMED, RecordingStates, paused_cameras
from camwire.common import wire

S = 1_000_000_000


def on(ts: int) -> wire.Motion:
    return wire.Motion(camera="c", active=True, ts_ns=ts * S, seq=1)


def off(ts: int, started: int) -> wire.Motion:
    return wire.Motion(camera="c", active=False, ts_ns=ts * S, started_ns=started * S, seq=9)


def status(state: str, ts: int) -> wire.Status:
    return wire.Status(camera="c", state=state, ts_ns=ts * S)


def covered(ts: int, is_covered: bool) -> wire.Result:
    return wire.Result(camera="c", seq=ts, ts_ns=ts * S, width=2, height=2,
                       flags=wire.Flags(covered=is_covered, covered_after=1))


class Run:
    """One life of a sink's state machines on ``path``; ``told`` commits, as the sink's emit does."""

    def __init__(self, path: Path) -> None:
        self.ledger = Ledger(path)
        self.events = Events(ledger=self.ledger)
        self.motion = MotionStates(self.events.ids, ledger=self.ledger)
        self.recording = RecordingStates(self.ledger)

    def told(self, events: list[wire.Event]) -> list[str]:
        self.ledger.commit()
        return [e.type for e in events]

    def killed(self) -> None:
        """A SIGKILL: nothing more is written (what told() committed is all there is)."""
        self.ledger.db.close()


def test_a_restarted_sink_knows_the_repeated_motion_state(tmp_path: Path) -> None:
    first = Run(tmp_path / "ledger.db")
    start, = first.motion.on_motion(on(10))
    first.ledger.commit()
    first.killed()

    again = Run(tmp_path / "ledger.db")
    assert again.motion.on_motion(on(10)) == []  # the extractor's heartbeat repeat: told already
    assert again.motion.counters.get("motion_messages", "c", "stale") == 1
    end, = again.motion.on_motion(off(15, 10))  # and the stretch it started still ends, once
    assert end.type == "motion_end" and end.id != start.id
    again.ledger.commit()
    again.killed()
    third = Run(tmp_path / "ledger.db")
    assert third.told(third.motion.on_motion(off(15, 10))) == []
    assert third.told(third.motion.on_motion(on(20))) == ["motion_start"]


def test_an_end_that_came_while_the_sink_was_down_ends_the_stretch(tmp_path: Path) -> None:
    first = Run(tmp_path / "ledger.db")
    assert first.told(first.motion.on_motion(on(10))) == ["motion_start"]
    first.killed()
    again = Run(tmp_path / "ledger.db")
    assert again.told(again.motion.on_motion(off(15, 10))) == ["motion_end"]  # not learnt silently


def test_camera_states_are_not_told_again(tmp_path: Path) -> None:
    first = Run(tmp_path / "ledger.db")
    assert first.told(first.events.on_status(status("online", 1))) == ["camera_online"]
    assert first.told(first.events.on_result(covered(2, True))) == ["camera_covered"]
    first.killed()

    again = Run(tmp_path / "ledger.db")
    assert again.told(again.events.on_status(status("online", 7))) == []
    assert again.told(again.events.on_result(covered(8, True))) == []
    assert again.told(again.events.on_result(covered(9, False))) == ["camera_uncovered"]
    assert again.told(again.events.on_status(status("failed", 10))) == ["camera_failed"]
    again.killed()

    third = Run(tmp_path / "ledger.db")
    assert third.told(third.events.on_status(status("failed", 20))) == []  # said once, not at every retry
    assert third.told(third.events.on_status(status("online", 21))) == ["camera_online"]


def test_ids_of_one_nanosecond_either_side_of_a_restart_differ(tmp_path: Path) -> None:
    """Two detectors' results for one frame: one reaches the sink before it is killed, one after."""
    first = Run(tmp_path / "ledger.db")
    before = first.events.ids(5 * S, "c", "object")
    first.ledger.commit()
    first.killed()
    again = Run(tmp_path / "ledger.db")
    after = again.events.ids(5 * S, "c", "object")
    assert before != after and after == f"{before}-1"


def test_nothing_committed_nothing_known(tmp_path: Path) -> None:
    """The ledger is written by the sink's emit (commit) only: a state not committed is not there."""
    first = Run(tmp_path / "ledger.db")
    first.motion.on_motion(on(10))
    first.killed()
    again = Run(tmp_path / "ledger.db")
    assert again.told(again.motion.on_motion(on(10))) == ["motion_start"]


def test_damaged_rows_start_afresh_and_the_tables_stay_bounded(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    first = Run(path)
    first.told(first.motion.on_motion(on(10)))
    first.killed()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE told SET state = '{\"active\": \"yes\"}'")
        db.executemany("INSERT INTO told_ids VALUES ('c', 'object', ?, 0)", [(i,) for i in range(MAX_IDS + 10)])
    again = Run(path)
    assert again.told(again.motion.on_motion(on(10))) == ["motion_start"]  # as a sink with no memory would
    again.ledger.prune()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM told_ids").fetchone()[0] == MAX_IDS


def pause(ts: float, etype: str = PAUSED, camera: str = "c") -> wire.Event:
    return wire.Event(id=f"{ts}-{camera}-{etype}", type=etype, camera=camera, ts=ts, reason="disk full")


def test_the_recorders_pause_is_told_once_and_kept_for_status(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    first = Run(path)
    assert first.told(first.recording.on_event(pause(1.0, RESUMED))) == []  # nothing was paused
    assert first.told(first.recording.on_event(pause(2.0))) == [PAUSED]
    assert first.told(first.recording.on_event(pause(3.0))) == []  # a restarted recorder says it again
    assert first.recording.counters.get("recorder_events", PAUSED, "repeated") == 1
    first.killed()
    assert [(p["camera"], p["since"], p["reason"]) for p in paused_cameras(tmp_path)] == [("c", 2.0, "disk full")]

    again = Run(path)
    assert again.told(again.recording.on_event(pause(4.0))) == []
    assert again.told(again.recording.on_event(pause(1.5, RESUMED))) == []  # older than the pause
    assert again.recording.counters.get("recorder_events", RESUMED, "stale") == 1
    assert again.told(again.recording.on_event(pause(5.0, RESUMED))) == [RESUMED]
    assert paused_cameras(tmp_path) == []


def test_without_a_data_dir_nothing_is_kept() -> None:
    ledger = Ledger(None)
    states = MotionStates(EventIds(ledger), ledger=ledger)
    assert [e.type for e in states.on_motion(on(10))] == ["motion_start"]
    ledger.commit()
    assert Ledger(None).recall("c", "motion", dict) is None
