"""What results and status become: events, debounced, with ids unique forever."""

from __future__ import annotations

from camwire.sink.camera_status import StatusBook
from camwire.sink.cameras import LiveCameras
from camwire.sink.events import SILENT, EventIds, Events
from camwire.sink.motion_state import MotionStates
from camwire.sink.recording_state import RecordingStates
from camwire.common import wire
from camwire.common.camera_state import EVENT_STATE


def result(seq: int, covered: bool | None = None, labels=(), ts: float | None = None, after: int = 3,
           camera: str = "c") -> wire.Result:
    flags = wire.Flags() if covered is None else wire.Flags(covered=covered, covered_after=after)
    return wire.Result(camera=camera, seq=seq, ts_ns=int((ts if ts is not None else 100 + seq / 10) * 1e9),
                       width=4, height=4, flags=flags,
                       detections=[wire.Detection(lab, 0.9, (0, 0, 1, 1)) for lab in labels])


def status(state: str, camera: str = "c", **kw) -> wire.Status:
    return wire.Status(camera=camera, state=state, ts_ns=1_000_000_000, **kw)


def types(events: Events, results) -> list[str]:
    return [e.type for r in results for e in events.on_result(r)]


def test_covered_fires_once_after_n_frames_and_uncovered_once() -> None:
    seq = [False] * 3 + [True] * 10 + [False] * 10
    assert types(Events(), [result(i, c) for i, c in enumerate(seq)]) == ["camera_covered", "camera_uncovered"]


def test_short_covered_blip_is_ignored() -> None:
    seq = [False, True, True, False, True, False]
    assert types(Events(), [result(i, c) for i, c in enumerate(seq)]) == []


def test_stale_result_does_not_move_state_back() -> None:
    ev = Events()
    assert types(ev, [result(i, True, after=2) for i in (1, 2)]) == ["camera_covered"]
    assert types(ev, [result(0, False, after=1)]) == []


def test_no_event_per_frame_for_objects() -> None:
    ev = Events()
    assert types(ev, [result(i, labels=("person", "car"), ts=100 + i * 0.3) for i in range(8)]) == []


def test_status_changes_only_and_failed_once_with_its_reason() -> None:
    ev = Events()
    states = ("online", "online", "offline", "offline", "online", "failed", "failed", "offline", "failed", "online")
    out = [(e.type, e.reason) for s in states
           for e in ev.on_status(status(s, reason="x" if s == "offline" else "HTTP 404" if s == "failed" else None))]
    assert out == [("camera_online", None), ("camera_offline", "x"), ("camera_online", None),
                   ("camera_failed", "HTTP 404"), ("camera_failed", "HTTP 404"), ("camera_online", None)]


def test_ids_are_unique_even_for_the_same_instant_out_of_order_and_across_restarts() -> None:
    ids = EventIds()
    # two detectors' objects of one camera interleave in time: 100 s, 200 s, then 100 s again
    a = [ids(t, "c", "object") for t in (100 * 10**9, 200 * 10**9, 100 * 10**9, 100 * 10**9)]
    assert len(set(a)) == 4
    restarted = EventIds()  # a restarted sink: capture times run on
    assert restarted(160 * 10**9, "c", "object") not in a
    assert a[0] == "19700101T000140.000000000Z-c-object" and a[2].endswith("-1")


def test_silent_extractor_goes_offline_once_and_comes_back() -> None:
    ev = Events(silent_after_s=15.0)
    ev.on_status(status("online"), now=0.0)
    assert ev.silence_check(now=14.0) == []
    (off,) = ev.silence_check(now=15.0)
    assert (off.type, off.camera, off.reason) == ("camera_offline", "c", SILENT)
    assert ev.silence_check(now=100.0) == []  # said once
    assert [e.type for e in ev.on_result(result(5), now=101.0)] == ["camera_online"]
    # an ended camera is silent on purpose
    ev.on_eos(wire.Eos(camera="c", results=1))
    assert ev.silence_check(now=1000.0) == []


def test_cameras_beyond_the_bound_are_counted_not_remembered() -> None:
    ev = Events(max_cameras=2)
    assert ev.admit("a") and ev.admit("b") and ev.admit("a")
    assert not ev.admit("c") and not ev.admit("d")
    assert set(ev.cameras) == {"a", "b"} and ev.counters.get("unknown_cameras") == 2


def test_drained_when_all_expected_results_are_in_or_the_source_failed() -> None:
    ev = Events()
    ev.on_result(result(0))
    ev.on_eos(wire.Eos(camera="c", results=2))
    assert not ev.drained("c")
    ev.on_result(result(1))
    assert ev.drained("c")
    ev.on_status(status("failed", camera="f", reason="no such file"))
    assert not ev.drained("f")
    ev.on_eos(wire.Eos(camera="f", results=3))  # frames that never came: nothing more will
    assert ev.drained("f")


def test_results_before_the_first_online_still_count_and_a_camera_back_after_its_end_counts_anew() -> None:
    ev = Events()
    for i in range(3):  # through a fast worker, ahead of the status that went through a slow one
        ev.on_result(result(i))
    ev.on_status(status("online"))
    ev.on_eos(wire.Eos(camera="c", sent=3, results=3))
    assert ev.drained("c")
    ev.on_status(status("offline"))
    ev.on_status(status("online"))  # the file camera restarted (a reload): not drained any more
    assert not ev.drained("c")
    ev.on_result(result(0, ts=500.0))
    ev.on_eos(wire.Eos(camera="c", sent=1, results=1))
    assert ev.drained("c")


def test_events_status_motion_and_the_recorders_pause_share_one_live_record() -> None:
    cameras = LiveCameras()
    ev, book = Events(cameras=cameras), StatusBook(None, cameras=cameras)
    motion, recording = MotionStates(ev.ids, cameras=cameras), RecordingStates(cameras=cameras)
    told = []
    for state in ("online", "offline", "failed", "online"):
        told += [e.type for e in ev.on_status(status(state, reason="x"))]
        book.on_status(status(state, reason="x"))
    told += types(ev, [result(i, covered, after=1) for i, covered in enumerate((True, False))])
    assert set(told) == set(EVENT_STATE)  # every camera_* event tells a state of common.camera_state
    motion.on_motion(wire.Motion(camera="c", active=True, ts_ns=1))
    recording.on_event(wire.Event(id="r", type="recording_paused", camera="c", ts=1.0, reason="disk full"))
    live = cameras["c"]
    assert (live.state, live.covered, live.motion, live.recording_paused) == ("online", False, True, True)
    ev.on_eos(wire.Eos(camera="c", reason="ended early: x"))
    book.on_eos(wire.Eos(camera="c", reason="ended early: x"))
    assert (live.state, live.reason) == ("ended", "ended early: x")
    assert list(cameras) == ["c"]  # one record, which the sink drops to forget the camera
