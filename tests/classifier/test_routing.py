"""Routing by detector in the ventilator's decisions, without sockets: a camera's frames go only
to workers serving its detector, each group by credits and in turns; a detector nobody serves is
counted, never waited for."""

from __future__ import annotations

from camwire.classifier.dispatch import Dispatcher
from camwire.common.wire import Eos
from test_dispatch import drain, frame


def pool(**routes: str | list[str]) -> Dispatcher:
    """Cameras a (objects), b (covered), c (any); workers o1, o2 serve objects, k1 covered."""
    d = Dispatcher(routes={"a": ["objects"], "b": ["covered"], **{k: [v] if isinstance(v, str) else v
                                                                   for k, v in routes.items()}})
    d.ready(b"o1", "o1", 0, [], now=0, detector="objects")
    d.ready(b"o2", "o2", 0, [], now=0, detector="objects")
    d.ready(b"k1", "k1", 0, [], now=0, detector="covered")
    return d


def test_a_cameras_frames_go_only_to_workers_serving_its_detector() -> None:
    d = pool()
    for seq in range(4):
        for camera in "abc":
            d.offer(frame(camera, seq, live=False), [])
    d.ready(b"k1", "k1", 20, [], now=1, detector="covered")  # the most credits, and the oldest
    d.ready(b"o1", "o1", 2, [], now=1, detector="objects")
    d.ready(b"o2", "o2", 20, [], now=1, detector="objects")
    sent = drain(d)
    by_worker = {w: [(c, s) for w2, c, s in sent if w2 == w] for w in (b"o1", b"o2", b"k1")}
    assert {c for c, _ in by_worker[b"k1"]} == {"b", "c"}  # covered: b, and the camera that names none
    assert {c for c, _ in by_worker[b"o1"] + by_worker[b"o2"]} <= {"a", "c"}
    assert sorted(s for w, c, s in sent if c == "a") == [0, 1, 2, 3]  # every frame of a, to objects only
    assert sorted(s for w, c, s in sent if c == "b") == [0, 1, 2, 3]
    assert sorted(s for w, c, s in sent if c == "c") == [0, 1, 2, 3]  # once each, to whoever was free
    assert len(by_worker[b"o1"]) == 2  # its credits, no more
    assert d.backlog() == 0


def test_credits_are_kept_per_group() -> None:
    d = pool()
    d.ready(b"k1", "k1", 3, [], now=1, detector="covered")
    for seq in range(3):
        d.offer(frame("a", seq, live=False), [])
    assert drain(d) == []  # covered's credits do not take objects' frames
    d.ready(b"o2", "o2", 1, [], now=2, detector="objects")
    assert drain(d) == [(b"o2", "a", 0)]
    d.offer(frame("b", 0, live=False), [])
    assert drain(d) == [(b"k1", "b", 0)]
    assert d.workers[b"k1"].credits == 2 and d.workers[b"o2"].credits == 0


def test_cameras_take_turns_within_a_group() -> None:
    d = pool(d="objects")
    for seq in range(3):
        d.offer(frame("a", seq, live=False), [])
        d.offer(frame("d", seq, live=False), [])
        d.offer(frame("b", seq, live=False), [])
    d.ready(b"o1", "o1", 6, [], now=1, detector="objects")
    assert [c for _, c, _ in drain(d)] == ["a", "d", "a", "d", "a", "d"]
    d.ready(b"k1", "k1", 6, [], now=1, detector="covered")
    assert [(c, s) for _, c, s in drain(d)] == [("b", 0), ("b", 1), ("b", 2)]


def test_the_worker_free_longest_in_a_group_goes_first() -> None:
    d = pool()
    d.ready(b"o2", "o2", 1, [], now=1, detector="objects")
    d.ready(b"o1", "o1", 1, [], now=2, detector="objects")
    d.offer(frame("a", 0, live=False), [])
    d.offer(frame("a", 1, live=False), [])
    assert [w for w, _, _ in drain(d)] == [b"o2", b"o1"]


def test_newest_frame_wins_per_group() -> None:
    d = pool()
    for seq in range(5):
        d.offer(frame("a", seq), [])
        d.offer(frame("b", seq), [])
    d.ready(b"o1", "o1", 5, [], now=1, detector="objects")
    d.ready(b"k1", "k1", 5, [], now=1, detector="covered")
    assert sorted(drain(d)) == [(b"k1", "b", 4), (b"o1", "a", 4)]
    assert d.counters.get("dropped", "a", "superseded") == 4 and d.counters.get("dropped", "b", "superseded") == 4


def test_a_camera_wanting_two_detectors_goes_to_one_worker_of_each() -> None:
    d = pool(both=["objects", "covered"])
    d.ready(b"o1", "o1", 2, [], now=1, detector="objects")
    d.ready(b"o2", "o2", 2, [], now=1, detector="objects")
    d.ready(b"k1", "k1", 2, [], now=1, detector="covered")
    d.offer(frame("both", 0, live=False), [])
    d.offer(frame("both", 1, live=False), [])
    sent = drain(d)
    assert sorted((c, s) for w, c, s in sent if w == b"k1") == [("both", 0), ("both", 1)]
    assert sorted((c, s) for w, c, s in sent if w != b"k1") == [("both", 0), ("both", 1)]
    d.end_of_stream(Eos(camera="both", sent=2))
    for w, c, s in sent:
        d.ready(w, w.decode(), 0, [(c, s)], now=2, detector="covered" if w == b"k1" else "objects")
    assert d.drained() == [Eos(camera="both", sent=2, results=4)]  # one result per frame and detector


def test_a_detector_nobody_serves_is_counted_and_the_others_flow() -> None:
    d = pool(e="hog", both=["objects", "hog"])
    d.ready(b"o1", "o1", 10, [], now=1, detector="objects")
    for seq in range(3):
        d.offer(frame("e", seq, live=False), [])
        d.offer(frame("both", seq, live=False), [])
        d.offer(frame("a", seq, live=False), [])
    assert d.backlog() == 6  # a's and both's for objects; nothing waits for hog (a file would pause every camera)
    assert sorted((c, s) for _, c, s in drain(d)) == [("a", 0), ("a", 1), ("a", 2),
                                                      ("both", 0), ("both", 1), ("both", 2)]
    assert d.counters.get("unserved", "e", "hog") == 3 and d.counters.get("unserved", "both", "hog") == 3
    assert d.unserved_now() == {("e", "hog"): 3, ("both", "hog"): 3}
    d.end_of_stream(Eos(camera="e", sent=3))
    assert d.drained() == [Eos(camera="e", sent=3, results=0)]  # the sink hears it ended, with no results
    d.ready(b"h1", "h1", 1, [], now=2, detector="hog")  # served from now on
    assert d.unserved_now() == {}
    d.offer(frame("e", 3, live=False), [])
    assert drain(d) == [(b"h1", "e", 3)]


def test_frames_waiting_when_the_last_worker_of_their_detector_goes_are_counted() -> None:
    d = pool()
    d.offer(frame("b", 0, live=False), [])
    d.offer(frame("b", 1, live=False), [])
    assert d.backlog() == 2
    assert d.forget(b"k1", "heartbeat") == []
    assert d.backlog() == 0 and d.counters.get("unserved", "b", "covered") == 2
    d.ready(b"k2", "k2", 0, [], now=1, detector="covered")
    d.offer(frame("a", 0, live=False), [])
    d.leaving(b"o1")
    d.leaving(b"o2")  # leaving: serves nobody from now on
    assert d.counters.get("unserved", "a", "objects") == 1 and d.unserved_now() == {("a", "objects"): 1}


def test_with_no_worker_at_all_frames_wait_as_before() -> None:
    d = Dispatcher(routes={"a": ["objects"]})
    d.offer(frame("a", 0, live=False), [])
    assert d.backlog() == 1 and d.unserved_now() == {}
    d.ready(b"o1", "o1", 1, [], now=1, detector="objects")
    assert drain(d) == [(b"o1", "a", 0)]


def test_a_worker_naming_no_detector_serves_only_cameras_naming_none() -> None:
    d = Dispatcher(routes={"a": ["objects"]})
    d.ready(b"old", "old", 4, [], now=0)  # a worker from before routing
    d.ready(b"o1", "o1", 0, [], now=0, detector="objects")
    d.offer(frame("a", 0, live=False), [])
    d.offer(frame("c", 0, live=False), [])
    assert drain(d) == [(b"old", "c", 0)]


def test_a_worker_free_for_two_groups_takes_the_older_frame() -> None:
    d = pool()
    d.offer(frame("c", 0, live=False), [])
    d.offer(frame("a", 0, live=False), [])
    d.offer(frame("c", 1, live=False), [])
    d.ready(b"o1", "o1", 3, [], now=1, detector="objects")
    assert [(c, s) for _, c, s in drain(d)] == [("c", 0), ("a", 0), ("c", 1)]


def test_a_worker_restarted_serving_another_detector_moves_group() -> None:
    d = pool()
    d.ready(b"o1", "o1", 2, [], now=1, detector="objects")
    d.ready(b"o1", "o1", 1, [], now=2, detector="covered")
    assert d.workers[b"o1"].credits == 1  # its objects credits went with its old detector
    d.offer(frame("a", 0, live=False), [])
    d.offer(frame("b", 0, live=False), [])
    assert drain(d) == [(b"o1", "b", 0)]


def test_routes_follow_a_reload() -> None:
    d = pool()
    d.ready(b"k1", "k1", 2, [], now=1, detector="covered")
    d.offer(frame("a", 0, live=False), [])
    d.set_routes({"a": ["covered"]})
    d.offer(frame("a", 1, live=False), [])
    assert drain(d) == [(b"k1", "a", 1)]  # the waiting frame stays where it was


def test_a_cameras_detector_comes_from_the_file_and_route_flags_override_it(tmp_path) -> None:
    import argparse

    import pytest

    from camwire.classifier.ventilator import routes_of
    from camwire.common.settings.values import route
    from camwire.common.config import ConfigError, load_config

    path = tmp_path / "camwire.toml"
    path.write_text('[cameras.a]\nurl = "a.mp4"\ndetector = "objects"\n'
                    '[cameras.b]\nurl = "b.mp4"\ndetector = ["objects", "covered"]\n'
                    '[cameras.c]\nurl = "c.mp4"\n')
    cfg = load_config(path)
    assert routes_of(cfg, None) == {"a": ["objects"], "b": ["objects", "covered"]}
    assert routes_of(cfg, [route("b=hog"), route("c=hog"), route("c=covered")]) == {
        "a": ["objects"], "b": ["hog"], "c": ["hog", "covered"]}
    for bad in ("c", "=hog", "c=", "bad name=hog", "c=" + "x" * 129):
        with pytest.raises(argparse.ArgumentTypeError):
            route(bad)
    for value, line in (('""', 3), ('["objects", "objects"]', 3), ("7", 3)):
        path.write_text(f'[cameras.a]\nurl = "a.mp4"\ndetector = {value}\n')
        with pytest.raises(ConfigError) as exc:
            load_config(path)
        assert exc.value.line == line and "cameras.a.detector" in str(exc.value)
