"""Tracked objects from synthetic boxes: ids, start after min_frames, rate-limited updates, end
after the gone time, the best snapshot, and results put back in order first.

These take every label at any score, and no stationary objects (``EVERYTHING``): what the default
rule filters, and stationary objects, are tests/sink/test_filters.py's."""

from __future__ import annotations

import random

import msgspec

from camwire.sink.events import EventIds
from camwire.common.rules import Filter, Rule, Rules
from camwire.sink.tracking import Tracking
from camwire.common import wire

STEP_NS = 200_000_000  # 5 frames a second
T0 = 1_795_000_000 * 10**9


def result(seq: int, *dets: tuple[str, float, tuple], camera: str = "c", jpeg: bool = True):
    r = wire.Result(camera=camera, seq=seq, ts_ns=T0 + seq * STEP_NS, width=640, height=360, worker="w",
                    detections=[wire.Detection(label, conf, box) for label, conf, box in dets])
    return r, (f"jpeg-{seq}".encode() if jpeg and dets else None)


def walker(seq: int, x0: float = 100.0, y: float = 100.0, label: str = "person", conf: float = 0.8) -> tuple:
    """A 40x80 box walking right 4 px a frame."""
    x = x0 + 4 * seq
    return (label, conf, (x, y, x + 40, y + 80))


EVERYTHING = Rule(labels=None, base=Filter(min_confidence=0.0, threshold=0.0, min_frames=1), stationary_after_s=0.0)


def tracking(min_frames: int = 1, gone_s: float = 1.0, update_every_s: float = 100.0, **kw) -> Tracking:
    rule = Rule(labels=None, base=Filter(min_confidence=0.0, threshold=0.0, min_frames=min_frames),
                stationary_after_s=0.0)
    return Tracking(EventIds(), Rules(default=rule), gone_s=gone_s, update_every_s=update_every_s, **kw)


def feed(t: Tracking, results, now: float = 0.0) -> list:
    out = []
    for r, jpeg in results:
        out += t.on_result(r, jpeg, now)
    return out


def test_one_walker_is_one_object_started_after_min_frames_and_ended_after_the_gone_time() -> None:
    t = tracking(min_frames=3, gone_s=1.0, window=1)
    frames = [result(0)] + [result(s, walker(s)) for s in range(1, 21)] + [result(s) for s in range(21, 40)]
    out = [e for e, _ in feed(t, frames)]
    assert [e.phase for e in out] == ["start", "end"]
    start, end = out
    assert start.type == end.type == "object" and start.object_id == end.object_id == start.id
    # ByteTrack confirms a new track on its second frame (seq 2); seen 3 times at seq 4
    assert start.seq == 4 and start.label == "person" and start.score == start.top_score == 0.8
    assert start.first_seen == (T0 + 2 * STEP_NS) / 1e9 and start.box == (116.0, 100.0, 156.0, 180.0)
    # last seen at seq 20; gone for 1 s (5 frames) at seq 25
    assert end.last_seen == (T0 + 20 * STEP_NS) / 1e9 and end.ts == (T0 + 25 * STEP_NS) / 1e9
    assert end.box == (180.0, 100.0, 220.0, 180.0)
    assert t.counters.get("objects", "c", "start") == 1 and t.counters.get("objects", "c", "end") == 1


def test_noise_seen_fewer_than_min_frames_times_is_no_event() -> None:
    t = tracking(min_frames=5, window=1)
    out = feed(t, [result(0)] + [result(s, walker(s)) for s in (1, 2, 3)] + [result(s) for s in range(4, 20)])
    assert out == [] and t.counters.get("suppressed", "c", "min_frames") == 1


def test_updates_are_rate_limited_and_carry_what_changed() -> None:
    t = tracking(update_every_s=1.0, window=1)
    # the score rises every frame: a change every frame, an update at most once a second (5 frames)
    frames = [result(s, walker(s, conf=0.5 + s / 100)) for s in range(0, 21)] + [result(s) for s in range(21, 30)]
    out = [e for e, _ in feed(t, frames)]
    assert [(e.phase, e.seq) for e in out] == [("start", 0), ("update", 5), ("update", 10), ("update", 15),
                                             ("update", 20), ("end", 20)]
    assert len({e.object_id for e in out}) == 1 and [e.top_score for e in out][1:4] == [0.55, 0.6, 0.65]
    # a label seen more often (by summed confidence) takes over: an update says so
    t = tracking(update_every_s=0.0, window=1)
    labels = ["car", "car", "truck", "truck", "truck", "truck"]
    out = [e for e, _ in feed(t, [result(s, walker(s, label=lab, conf=0.8)) for s, lab in enumerate(labels)])]
    assert [(e.phase, e.label) for e in out] == [("start", "car"), ("update", "truck")]


def test_two_objects_two_ids_and_other_labels_and_confidences_per_the_rule() -> None:
    rules = Rules(default=Rule(labels=frozenset({"person"}), base=Filter(min_confidence=0.5, threshold=0.0),
                               stationary_after_s=0.0))
    t = Tracking(EventIds(), rules, gone_s=1.0, window=1)
    frames = [result(s, walker(s), walker(s, y=250.0), walker(s, x0=400, label="dog"),
                     walker(s, x0=500, conf=0.3)) for s in range(10)]
    out = [e for e, _ in feed(t, frames + [result(s) for s in range(10, 20)])]
    starts = [e for e in out if e.phase == "start"]
    assert len(starts) == 2 and len({e.object_id for e in out}) == 2 and {e.label for e in out} == {"person"}
    assert {e.box[1] for e in starts} == {100.0, 250.0}
    assert [e.phase for e in out].count("end") == 2


def test_the_best_snapshot_is_the_most_confident_frame_not_cut_by_the_edge() -> None:
    t = tracking(update_every_s=0.0, window=1)
    frames = [result(0, ("car", 0.95, (0.0, 100.0, 80.0, 160.0))),  # at the left edge: cut
              result(1, ("car", 0.97, (0.0, 100.0, 84.0, 160.0))),
              result(2, ("car", 0.7, (8.0, 100.0, 88.0, 160.0))),  # inside: better, though less sure
              result(3, ("car", 0.9, (12.0, 100.0, 92.0, 160.0))),
              result(4, ("car", 0.8, (16.0, 100.0, 96.0, 160.0)))] + [result(s) for s in range(5, 12)]
    out = feed(t, frames)
    sent = [(e.phase, e.seq, snap.pixels if snap else None) for e, snap in out]
    assert sent == [("start", 0, b"jpeg-0"), ("update", 1, b"jpeg-1"), ("update", 2, b"jpeg-2"),
                    ("update", 3, b"jpeg-3"), ("end", 4, None)]
    best = out[3][1]
    assert best.box == (12.0, 100.0, 92.0, 160.0) and best.size == (640, 360) and best.label == "car"
    t.saved("c", out[0][0].object_id, "/snap/x.jpg")  # later events name the snapshot written
    assert out[-1][0].top_score == 0.97


def test_results_out_of_order_give_the_same_objects_as_in_order() -> None:
    def frames():
        # two walkers crossing paths in opposite directions, then a third later on
        for s in range(60):
            dets = [walker(s, x0=50), ("person", 0.8, (500 - 4 * s, 120.0, 540 - 4 * s, 200.0))]
            if 30 <= s < 50:
                dets.append(walker(s, x0=0, y=260.0, label="car"))
            yield result(s, *dets)
        for s in range(60, 80):
            yield result(s)

    in_order = [(e.phase, e.seq, e.object_id, e.label) for e, _ in feed(tracking(window=8), frames())]
    shuffled = list(frames())
    rng = random.Random(4)
    for i in range(0, len(shuffled) - 6, 6):  # as two workers answer: each run of 6 in any order
        chunk = shuffled[i:i + 6]
        rng.shuffle(chunk)
        shuffled[i:i + 6] = chunk
    t = tracking(window=8)
    out = [(e.phase, e.seq, e.object_id, e.label) for e, _ in feed(t, shuffled)]
    assert out == in_order and t.counters.get("late", "c") == 0
    assert [p for p, *_ in out].count("start") == 3 and len({oid for _, _, oid, _ in out}) == 3


def test_late_results_are_counted_and_quiet_cameras_end_their_objects() -> None:
    t = tracking(window=2, max_wait_s=1.0, gone_s=2.0)
    assert feed(t, [result(s, walker(s)) for s in (0, 1, 2, 3)], now=0.0)  # started
    assert feed(t, [result(0, walker(0))], now=0.0) == [] and t.counters.get("late", "c") == 1
    assert feed(t, [result(5, walker(5))], now=0.0) == []  # 4 never comes: 5 waits
    assert t.tick(now=0.5) == []
    assert t.tick(now=1.0) == []  # 5 released past the gap, the object goes on
    assert t.tick(now=59.0) == []  # no frames, so not seen missing (a motion-gated still scene)
    assert [e.phase for e, _ in t.tick(now=60.0)] == ["end"]  # nothing heard for QUIET_S: gone
    assert t.tick(now=100.0) == []


def test_finish_releases_what_is_held_and_ends_every_object() -> None:
    t = tracking(window=100)
    assert feed(t, [result(s, walker(s)) for s in range(5)]) == []  # all held: the window is not full
    out = [(e.phase, e.seq) for e, _ in t.finish("c")]
    assert out == [("start", 0), ("end", 4)] and t.finish("c") == [] and t.finish("nobody") == []


def test_masks_drop_detections_standing_in_them_and_zones_are_listed_and_required() -> None:
    from camwire.common.geometry import parse_polygon, parse_zones
    from camwire.sink.tracking import Areas

    # the left quarter of the frame is masked; "lawn" is the band y 150..250 from x 300 on
    areas = {"c": Areas(masks=(parse_polygon([[0.0, 0.0], [0.25, 0.0], [0.25, 1.0], [0.0, 1.0]], "m"),),
                        zones=parse_zones({"lawn": [[300, 150], [640, 150], [640, 250], [300, 250]]}, "z"))}
    rules = Rules(default=EVERYTHING, cameras={"gate": Rule(labels=None, base=EVERYTHING.base, stationary_after_s=0.0,
                                                             zones=frozenset({"lawn"}))})
    t = Tracking(EventIds(), rules, gone_s=1.0, update_every_s=0.0, window=1, areas=areas)
    # a walker from x 100 (standing at x 120: masked, 160 is the mask's edge) to the right, feet at y 180
    frames = [result(s, ("person", 0.8, (100 + 20 * s, 100.0, 140 + 20 * s, 180.0))) for s in range(20)]
    out = [e for e, _ in feed(t, frames + [result(s) for s in range(20, 30)])]
    start = out[0]
    # feet at x 180 from seq 3 on: out of the mask (a new track is confirmed on its second frame)
    assert start.phase == "start" and start.seq == 4 and start.zones == []
    assert t.counters.get("suppressed", "c", "masked") == 3  # x 120, 140, 160 (on the edge: masked)
    entered = next(e for e in out if e.zones)
    assert entered.phase == "update" and entered.seq == 9 and entered.zones == ["lawn"]  # feet at x 300
    assert out[-1].phase == "end" and out[-1].zones == ["lawn"]

    # a rule's zones: the object starts only once it has entered one
    t = Tracking(EventIds(), rules, gone_s=1.0, window=1, areas={"gate": areas["c"]})
    out = [e for e, _ in feed(t, [(r.__class__(**{**{f: getattr(r, f) for f in r.__struct_fields__},
                                                 "camera": "gate"}), j) for r, j in frames])]
    assert out[0].phase == "start" and out[0].seq == 9 and out[0].zones == ["lawn"]


def test_a_fast_detector_running_ahead_makes_no_result_of_another_late() -> None:
    """A camera wants an object model and ``covered``: the cheap one answers every frame seconds
    before the model does. Each detector's results are ordered and tracked apart."""
    t = tracking(min_frames=3, gone_s=1.0, window=4)
    covered = [(msgspec.structs.replace(r, detector="covered"), None) for r, _ in (result(s) for s in range(40))]
    model = [(msgspec.structs.replace(r, detector="ssd"), j) for r, j in (result(s, walker(s)) for s in range(30))]
    model += [(msgspec.structs.replace(r, detector="ssd"), j) for r, j in (result(s) for s in range(30, 40))]
    out = [e for e, _ in feed(t, covered + model)]
    assert t.counters.get("late", "c") == 0
    assert [e.phase for e in out] == ["start", "end"] and out[0].detector == "ssd"


def test_a_walker_lost_for_a_moment_and_found_farther_on_is_still_one_object() -> None:
    """Two missed frames and a jump past any overlap (people crossing): ByteTrack starts a new
    track; the object goes on under it (counted ``relinked``), one start and one end."""
    t = tracking(min_frames=3, gone_s=1.0, window=1)
    seen = [s for s in range(1, 30) if s not in (12, 13)]
    frames = [result(0)] + [result(s, walker(s, x0=100 if s < 12 else 140)) for s in seen]
    frames += [result(s) for s in range(30, 40)]
    out = [e for e, _ in feed(t, frames)]
    assert [e.phase for e in out] == ["start", "end"]
    assert t.counters.get("relinked", "c") == 1
    assert out[1].last_seen == (T0 + 29 * STEP_NS) / 1e9


def test_two_walkers_far_apart_stay_two_objects() -> None:
    t = tracking(min_frames=3, gone_s=1.0, window=1)
    frames = [result(0)] + [result(s, walker(s, x0=50), walker(s, x0=400)) for s in range(1, 20)]
    frames += [result(s) for s in range(20, 30)]
    out = [e for e, _ in feed(t, frames)]
    assert sorted(e.phase for e in out) == ["end", "end", "start", "start"]
    assert t.counters.get("relinked", "c") == 0


def test_sightings_name_every_frame_an_object_was_seen_in_even_when_results_come_out_of_order() -> None:
    """What the sink's ``[upload] what = ["frames"]`` keeps (sink.store.frames): each (object, seq,
    JPEG) tracked, in seq order, and the objects that ended without a start."""
    t = tracking(min_frames=3, gone_s=1.0, sightings=True)
    frames = [result(s, walker(s)) for s in range(1, 13)]
    held_back = frames[2:6]  # 3..6 arrive after 7..12: released in one batch once they come
    feed(t, frames[:2] + frames[6:] + held_back)
    t.finish("c")
    sightings, unstarted = t.take_sightings()
    # ByteTrack takes a track on the stream's first frame at once: seqs 1..12, each with its own JPEG
    assert [seq for _obj, seq, _jpeg in sightings] == list(range(1, 13))
    assert all(jpeg == f"jpeg-{seq}".encode() for _obj, seq, jpeg in sightings)
    assert len({id(obj) for obj, _seq, _jpeg in sightings}) == 1 and unstarted == []
    assert t.take_sightings() == ([], [])
    # a passer-by seen twice (min_frames 3) ends unstarted: named, so its held frames are dropped
    t2 = tracking(min_frames=3, gone_s=1.0, sightings=True)
    feed(t2, [result(s, walker(s)) for s in range(1, 3)] + [result(s) for s in range(3, 12)])
    t2.finish("c")
    sightings, unstarted = t2.take_sightings()
    assert [seq for _obj, seq, _jpeg in sightings] == [1, 2] and [id(o) for o in unstarted] == [id(sightings[0][0])]
    assert tracking().take_sightings() == ([], [])  # off by default: nothing kept


def test_a_walker_who_left_through_an_edge_is_not_the_one_who_comes_in_there_next() -> None:
    """One walks out at the right edge; two seconds later another comes in there, walking left.
    ByteTrack would hand the newcomer the lost track (and the gone time would keep the object):
    an object last seen going out through an edge ends after EXIT_S, so these are two objects.
    One who stops short of the edge and is missed as long is still one object."""
    from camwire.sink.tracking import EXIT_S

    out_at = [result(s, ("person", 0.8, (520.0 + 12 * s, 100.0, 560.0 + 12 * s, 180.0))) for s in range(7)]
    gap = [result(s) for s in range(7, 17)]  # 2 s: longer than EXIT_S, shorter than gone_s
    back_in = [result(s, ("person", 0.8, (600.0 - 12 * (s - 17), 100.0, 640.0 - 12 * (s - 17), 180.0)))
               for s in range(17, 27)]
    t = tracking(gone_s=5.0, window=1)
    out = [e for e, _ in feed(t, out_at + gap + back_in + [result(s) for s in range(27, 60)])]
    assert EXIT_S < len(gap) * STEP_NS / 1e9 < 5.0
    starts = [e for e in out if e.phase == "start"]
    assert len(starts) == 2 and len({e.object_id for e in out}) == 2
    first_end = next(e for e in out if e.phase == "end")
    assert first_end.last_seen == (T0 + 6 * STEP_NS) / 1e9 and first_end.box[2] == 632.0

    # the same gap in the middle of the picture: missed, not gone
    middle = [result(s, walker(s, x0=100.0)) for s in range(7)] + gap + \
             [result(s, walker(s, x0=100.0)) for s in range(17, 27)]
    t = tracking(gone_s=5.0, window=1)
    out = [e for e, _ in feed(t, middle + [result(s) for s in range(27, 60)])]
    assert [e.phase for e in out if e.phase != "update"] == ["start", "end"]
