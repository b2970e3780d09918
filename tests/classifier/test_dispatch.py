"""The ventilator's decisions, without sockets."""

from __future__ import annotations

from camwire.classifier.dispatch import Dispatcher
from camwire.classifier.ventilator import LABELS
from camwire.common.counters import Counters
from camwire.common.wire import Eos, FrameHeader


def frame(camera: str, seq: int, live: bool = True) -> FrameHeader:
    return FrameHeader(camera=camera, seq=seq, ts_ns=seq, pts=None, width=2, height=2, live=live)


def drain(d: Dispatcher) -> list[tuple[bytes, str, int]]:
    out = []
    while (item := d.next_dispatch()) is not None:
        out.append((item[0], item[1].header.camera, item[1].header.seq))
    return out


def test_live_camera_keeps_only_its_newest_frame() -> None:
    d = Dispatcher()
    for seq in range(5):
        d.offer(frame("a", seq), [])
    d.ready(b"w1", "w1", 1, [], now=0)
    assert drain(d) == [(b"w1", "a", 4)]
    assert d.counters.get("dropped", "a", "superseded") == 4


def test_superseding_keeps_one_turn_per_camera() -> None:
    d = Dispatcher()
    d.offer(frame("a", 0), [])
    d.offer(frame("a", 1), [])
    d.ready(b"w1", "w1", 2, [], now=0)
    assert drain(d) == [(b"w1", "a", 1)]
    d.offer(frame("a", 2), [])
    assert drain(d) == [(b"w1", "a", 2)]


def test_file_frames_queue_and_pause_the_frontend() -> None:
    d = Dispatcher(max_backlog=3)
    for seq in range(3):
        d.offer(frame("f", seq, live=False), [])
    assert not d.accepting()
    d.ready(b"w1", "w1", 3, [], now=0)
    assert [s for _, _, s in drain(d)] == [0, 1, 2]
    assert d.accepting()


def test_free_worker_gets_work_busy_one_none() -> None:
    d = Dispatcher()
    d.ready(b"w1", "w1", 1, [], now=0)
    d.ready(b"w2", "w2", 1, [], now=0)
    for seq in range(2):
        d.offer(frame("a", seq, live=False), [])
    assert [w for w, _, _ in drain(d)] == [b"w1", b"w2"]
    d.offer(frame("a", 2, live=False), [])
    assert drain(d) == []  # nobody has a credit
    d.ready(b"w2", "w2", 1, [("a", 1)], now=1)
    assert drain(d) == [(b"w2", "a", 2)]


def test_cameras_take_turns() -> None:
    d = Dispatcher()
    for seq in range(3):
        d.offer(frame("a", seq, live=False), [])
        d.offer(frame("b", seq, live=False), [])
    d.ready(b"w", "w", 6, [], now=0)
    assert [c for _, c, _ in drain(d)] == ["a", "b", "a", "b", "a", "b"]


def test_lost_worker_costs_exactly_its_in_flight_frames() -> None:
    d = Dispatcher()
    d.ready(b"w1", "w1", 2, [], now=0)
    d.offer(frame("a", 0, live=False), [])
    d.offer(frame("a", 1, live=False), [])
    assert len(drain(d)) == 2
    d.ready(b"w1", "w1", 1, [("a", 0)], now=1)
    assert d.forget(b"w1", "heartbeat") == [("a", 1)]
    assert d.counters.get("dropped", "a", "worker_lost") == 1
    d.offer(frame("a", 2, live=False), [])
    assert drain(d) == []  # its credits went with it


def test_silent_worker_expires() -> None:
    d = Dispatcher()
    d.ready(b"w1", "w1", 1, [], now=0)
    d.ready(b"w2", "w2", 1, [], now=4)
    assert d.expired(now=5.5, timeout=5) == [b"w1"]


def test_eos_waits_for_in_flight_frames() -> None:
    d = Dispatcher()
    d.ready(b"w", "w", 1, [], now=0)
    d.offer(frame("f", 0, live=False), [])
    drain(d)
    d.end_of_stream(Eos(camera="f", sent=1))
    assert d.drained() == []
    d.ready(b"w", "w", 1, [("f", 0)], now=1)
    assert d.drained() == [Eos(camera="f", sent=1, results=1)]


def test_leaving_worker_gets_nothing_more() -> None:
    d = Dispatcher()
    d.ready(b"w1", "w1", 3, [], now=0)
    d.leaving(b"w1")
    d.offer(frame("a", 0), [])
    assert drain(d) == []


def test_a_workers_credits_are_capped() -> None:
    d = Dispatcher(max_credits=8)
    d.ready(b"w1", "w1", 4096, [], now=0)
    assert d.workers[b"w1"].credits == 8
    assert d.counters.get("refused", "credits") == 4096 - 8
    for seq in range(3):
        d.offer(frame("f", seq, live=False), [])
    assert len(drain(d)) == 3
    d.ready(b"w1", "w1", 100, [], now=1)  # 5 credits and 3 in flight: the cap counts both
    assert d.workers[b"w1"].credits == 5


def test_frames_held_past_the_deadline_are_lost_and_taken_back() -> None:
    d = Dispatcher(frame_deadline=30)
    d.ready(b"w1", "w1", 2, [], now=0)
    d.offer(frame("a", 0, live=False), [])
    d.offer(frame("a", 1, live=False), [])
    assert len(d.next_dispatch(now=0)) == 2 and len(d.next_dispatch(now=20)) == 2
    assert d.overdue(now=29) == []
    assert [key for _, key in d.overdue(now=31)] == [("a", 0)]
    assert d.counters.get("dropped", "a", "deadline") == 1
    d.end_of_stream(Eos(camera="a", sent=2))
    assert [key for _, key in d.overdue(now=51)] == [("a", 1)]
    assert d.drained() == [Eos(camera="a", sent=2, results=0)]  # nothing held: the eos goes on
    d.ready(b"w1", "w1", 1, [("a", 0)], now=52)  # a late answer is not counted twice
    assert d.counters.get("completed", "a") == 0 and d.counters.get("late", "unknown_done") == 1
    (load,), _ = d.load()
    assert load.lost == 2 and load.in_flight == 0


def test_cameras_past_the_pool_are_counted_per_peer_not_remembered() -> None:
    d = Dispatcher(max_cameras=2)
    assert d.offer(frame("a", 0), [], now=0) and d.offer(frame("b", 0), [], now=0)
    assert not d.offer(frame("c", 0), [], now=0, peer="10.0.0.9")
    assert not d.end_of_stream(Eos(camera="d"), now=0, peer="10.0.0.9")
    assert d.cameras == {"a", "b"} and d.counters.get("cameras_refused", "pool_full", "10.0.0.9") == 2
    assert d.offer(frame("a", 1), [], now=0)  # a known camera goes on


def test_a_configured_camera_has_a_place_whatever_the_pool_holds() -> None:
    d = Dispatcher(max_cameras=2, configured=["door"])
    for i in range(1000):
        d.offer(frame(f"fake{i}", 0), [], now=0, peer="10.0.0.9")
    assert d.offer(frame("door", 0), [], now=0)
    d.ready(b"w1", "w1", 10, [], now=0)
    assert (b"w1", "door", 0) in drain(d)
    assert d.counters.get("cameras_refused", "pool_full", "10.0.0.9") == 998


def test_an_idle_camera_is_forgotten_and_its_place_and_state_go() -> None:
    d = Dispatcher(max_cameras=2, camera_idle_s=60, counters=Counters(LABELS))
    d.offer(frame("a", 0), [], now=0)
    d.offer(frame("b", 0), [], now=0)
    d.ready(b"w1", "w1", 2, [], now=0)
    assert len(drain(d)) == 2
    d.ready(b"w1", "w1", 0, [("a", 0)], now=1)  # b's frame stays in flight
    assert d.forget_idle(now=59) == []
    assert d.forget_idle(now=61) == ["a"]  # b is kept while its frame is out
    assert d.cameras == {"b"} and not [k for k in d._queues if k[1] == "a"] and "a" not in d._completed
    assert d.counters.get("received", "a") == 0 and d.counters.get("received", "other") == 1  # still in the totals
    assert d.offer(frame("c", 0), [], now=62)  # a's place went to a new camera
    d.ready(b"w1", "w1", 0, [("b", 0)], now=63)
    assert d.forget_idle(now=200) == ["b"]  # c's frame still waits for a worker: c stays
    assert d.cameras == {"c"}


def test_a_camera_taken_out_of_the_config_joins_the_pool_or_is_forgotten() -> None:
    d = Dispatcher(max_cameras=1, configured=["x", "y"])
    d.offer(frame("x", 0), [], now=0)
    d.set_configured(["y"], now=1)  # x into the pool, which has room
    assert d.cameras == {"x", "y"}
    d.set_configured([], now=2)  # y finds the pool full: forgotten now
    assert d.cameras == {"x"}


def test_the_pool_is_bounded() -> None:
    d = Dispatcher(max_workers=1)
    d.ready(b"w1", "w1", 1, [], now=0)
    assert d.ready(b"w2", "w2", 1, [], now=0) is None
    assert list(d.workers) == [b"w1"] and d.counters.get("refused", "max_workers") == 1
