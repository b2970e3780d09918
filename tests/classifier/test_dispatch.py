"""The ventilator's decisions, without sockets."""

from __future__ import annotations

import random
from collections import Counter

import pytest

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
    d.ready(b"w1", "w1", 1, [("a", 0)], now=52)  # a late answer is not counted twice: late, no longer lost
    assert d.counters.get("completed", "a") == 0 and d.counters.get("late", "answered") == 1
    assert (d.account()["a"].deadline, d.account()["a"].late) == (1, 1)  # common.frame_account
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


# -- fair turns by weight --------------------------------------------------------------------------


def overload(d: Dispatcher, cameras: str | list[str], frames: int, factor: float, live: bool = True,
             seed: int = 7, seqs: Counter[str] | None = None) -> list[str]:
    """Cameras offering frames at the same rate, ``factor`` times what one worker takes (it asks
    for one more every ``factor`` frames, give or take half that, and finishes what it held): the
    cameras whose frames were dispatched, in order."""
    rng = random.Random(seed)
    seqs = Counter() if seqs is None else seqs
    sent: list[str] = []
    held: list[tuple[str, int]] = []
    turn: list[str] = []
    gap = 0.0
    for _ in range(frames):
        if not turn:  # each camera once per round, in a random order: the same rate, never in step
            turn = rng.sample(list(cameras), len(cameras))
        camera = turn.pop()
        d.offer(frame(camera, seqs[camera], live), [])
        seqs[camera] += 1
        gap -= 1
        if gap <= 0:
            gap += factor * rng.uniform(0.5, 1.5)
            d.ready(b"w", "w", 1, held, now=0)
            held = [(c, s) for _, c, s in drain(d)]
            sent += [c for c, _ in held]
    return sent


def shares(sent: list[str]) -> dict[str, float]:
    return {camera: n / len(sent) for camera, n in Counter(sent).items()}


def test_identical_cameras_get_the_same_share_under_overload() -> None:
    for seed in range(3):
        sent = Counter(overload(Dispatcher(), "abcd", 20_000, factor=2, seed=seed))
        mean = sum(sent.values()) / 4
        assert 9_000 < sum(sent.values()) < 11_000  # the worker was the bottleneck
        assert all(abs(n - mean) <= 0.02 * mean for n in sent.values()), sent


def test_shares_follow_the_weights() -> None:
    for live in (True, False):
        d = Dispatcher(weights={"a": 2, "b": 1}, max_backlog=10**6)  # c: not named, 1
        got = shares(overload(d, "abc", 30_000, factor=2, live=live))
        assert all(abs(got[c] - share) < 0.02 for c, share in (("a", 0.5), ("b", 0.25), ("c", 0.25))), (live, got)


def test_a_heavy_camera_gets_what_it_sends_and_the_rest_share() -> None:
    # a sends 1/3 of the frames and the worker takes 2/3: all a sends is 0.5 of what goes, less what
    # is superseded when two of its frames come between credits, whatever the turns
    got = shares(overload(Dispatcher(weights={"a": 10}), "abc", 30_000, factor=1.5))
    assert got["a"] > 0.44 and abs(got["b"] - got["c"]) < 0.01, got
    # e's share, 5/9, is just below what it sends, 0.6: it is owed the turns others take while its
    # next frame is on its way (0.31 when nothing is owed: textbook start-time fair queueing)
    got = shares(overload(Dispatcher(weights={"e": 5}), "abcde", 30_000, factor=3))
    light = [got[c] for c in "abcd"]
    assert got["e"] > 5 / 9 - 0.04 and max(light) - min(light) < 0.01, got


def test_weights_follow_a_reload() -> None:
    d = Dispatcher(weights={"a": 3}, max_backlog=10**6)
    d.set_weights({"b": 3, "a": 1})
    assert d.weights == {"b": 3.0}  # 1 is everyone's: not kept
    assert abs(shares(overload(d, "ab", 8_000, factor=2, live=False))["b"] - 0.75) < 0.02
    with pytest.raises(ValueError):
        d.set_weights({"a": 0})


def test_a_camera_idle_for_long_gets_no_burst_when_it_comes_back() -> None:
    for live in (True, False):
        d = Dispatcher(max_backlog=10**6)
        seqs: Counter[str] = Counter()
        overload(d, "abcd", 2_000, factor=2, live=live, seqs=seqs)
        overload(d, "abc", 6_000, factor=2, live=live, seqs=seqs)  # d says nothing meanwhile
        got = overload(d, "abcd", 800, factor=2, live=live, seqs=seqs)  # all four again
        if live:  # it may also go when the others' next frames are on their way: not a burst of credit
            assert abs(got.count("d") - len(got) / 4) <= 2, got
        else:  # all four always have a frame waiting: at no point is d ahead by more than one
            assert all(got[:n].count("d") <= n / 4 + 1 for n in range(1, len(got) + 1)), got
            assert abs(got.count("d") - len(got) / 4) <= 1, got


def test_a_new_camera_starts_level_with_the_others() -> None:
    d = Dispatcher(max_backlog=10**6)
    seqs: Counter[str] = Counter()
    overload(d, "abc", 6_000, factor=2, live=False, seqs=seqs)
    got = overload(d, "abcd", 800, factor=2, live=False, seqs=seqs)
    assert all(got[:n].count("d") <= n / 4 + 1 for n in range(1, len(got) + 1)), got


def test_turns_scale_to_many_cameras() -> None:
    cameras = [f"cam{i}" for i in range(500)]
    weight = {c: 1 + i % 3 for i, c in enumerate(cameras)}
    d = Dispatcher(weights=weight, configured=cameras)  # configured: past the pool of unnamed cameras
    got = overload(d, cameras, 100_000, factor=4)
    sent = Counter(got[len(got) // 4:])  # once every camera has joined
    per_weight = [sent[c] / weight[c] for c in cameras]
    mean = sum(per_weight) / len(per_weight)
    assert all(abs(n - mean) < 0.1 * mean for n in per_weight)  # ~20 frames a weight-1 camera: +-1 is 5%
    assert len(d._turns[""]._heap) <= 2 * len(cameras) + 16  # stale entries are swept


def test_a_frame_given_back_keeps_its_cameras_turn() -> None:
    d = Dispatcher(weights={"b": 2})
    for seq in range(3):
        d.offer(frame("a", seq, live=False), [])
        d.offer(frame("b", seq, live=False), [])
    d.ready(b"w", "w", 5, [], now=0)
    ident, pending = d.next_dispatch()
    assert pending.header.camera == "a"
    d.requeue(ident, pending)  # the send failed (its credit is spent: the worker is forgotten next)
    assert [(c, s) for _, c, s in drain(d)] == [("a", 0), ("b", 0), ("b", 1), ("a", 1)]
    assert d.counters.get("dispatched", "a") == 2


# -- the drop hook -----------------------------------------------------------------------------------


def hooked(**kwargs) -> tuple[Dispatcher, list[tuple[str, int, str, str]]]:
    """A dispatcher whose drops are written down: (camera, seq, group, reason)."""
    drops: list[tuple[str, int, str, str]] = []
    d = Dispatcher(on_drop=lambda p, why: drops.append((p.header.camera, p.header.seq, p.group, why)), **kwargs)
    return d, drops


def test_superseded_frames_go_to_the_drop_hook_and_dispatched_ones_never() -> None:
    d, drops = hooked()
    for seq in range(3):
        d.offer(frame("a", seq), [])
    assert drops == [("a", 0, "", "superseded"), ("a", 1, "", "superseded")]
    d.ready(b"w1", "w1", 1, [], now=0)
    assert drain(d) == [(b"w1", "a", 2)]
    d.offer(frame("a", 3), [])
    assert d.forget(b"w1", "heartbeat") == [("a", 2)]  # lost with its worker: not a drop
    assert len(drops) == 2 and d.backlog() == 1  # the pool is empty: a's frame waits, as ever


def test_frames_cleared_when_their_detector_loses_its_last_worker_go_to_the_drop_hook() -> None:
    d, drops = hooked(routes={"a": ["objects"], "both": ["objects", "covered"]})
    d.ready(b"o1", "o1", 0, [], now=0, detector="objects")
    d.ready(b"k1", "k1", 0, [], now=0, detector="covered")
    d.offer(frame("a", 0, live=False), [])
    d.offer(frame("a", 1, live=False), [])
    d.offer(frame("both", 0, live=False), [])
    d.offer(frame("c", 0), [])
    d.leaving(b"o1")
    assert sorted(drops) == [("a", 0, "objects", "unserved"), ("a", 1, "objects", "unserved"),
                             ("both", 0, "objects", "unserved")]
    assert d.counters.get("unserved", "a", "objects") == 2  # counted as before, once
    d.offer(frame("both", 1, live=False), [])  # objects has nobody now: given up at once
    assert drops[-1] == ("both", 1, "objects", "unserved")
    d.ready(b"k1", "k1", 5, [], now=1, detector="covered")
    assert sorted((c, s) for _, c, s in drain(d)) == [("both", 0), ("both", 1), ("c", 0)]
    assert len(drops) == 4


def test_a_forgotten_cameras_waiting_frames_go_to_the_drop_hook() -> None:
    d, drops = hooked(max_cameras=1, configured=["x", "y"], routes={"x": ["objects", "covered"]})
    d.offer(frame("x", 0, live=False), [], now=0)
    d.offer(frame("x", 1, live=False), [], now=0)
    d.offer(frame("y", 0), [], now=0)
    d.set_configured(["x"], now=1)  # y into the pool, which has room
    d.offer(frame("z", 0), [], now=1)  # the pool is full: refused, no frame kept, nothing dropped
    d.set_configured([], now=2)  # x finds the pool full: forgotten with its frames
    assert sorted(drops) == [("x", 0, "covered", "forgotten"), ("x", 0, "objects", "forgotten"),
                             ("x", 1, "covered", "forgotten"), ("x", 1, "objects", "forgotten")]
    d.ready(b"w", "w", 5, [], now=3)
    assert drain(d) == [(b"w", "y", 0)]
    assert len(drops) == 4


def test_a_cameras_weight_comes_from_the_file(tmp_path) -> None:
    from camwire.classifier.ventilator import weights_of
    from camwire.common.config import load_config

    path = tmp_path / "camwire.toml"
    path.write_text('[cameras.a]\nurl = "a.mp4"\nweight = 2\n[cameras.b]\nurl = "b.mp4"\nweight = 0.5\n'
                    '[cameras.c]\nurl = "c.mp4"\nweight = 1\n[cameras.d]\nurl = "d.mp4"\n')
    assert weights_of(load_config(path)) == {"a": 2.0, "b": 0.5}
    assert weights_of(None) == {}
