"""Tracked objects end to end: two real workers, one slow, answer a camera's frames out of order,
and each moving shape is still one object with one id, one start and one end; on a real clip with
a real detector (skipped when ../shared is absent), people walking are tracked, not re-announced
at every frame."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from camwire.sample import make_sample_clip
from conftest import ROOT, shared_clip, shared_model

HERE = Path(__file__).resolve().parent


def start_shapes_worker(daemons, p, name: str, detector: str) -> None:
    """A worker with shapes_worker.py's ``shapes`` detector, started and stopped like the others."""
    log = open(daemons.tmp / f"{name}.log", "wb")
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    daemons.procs[name] = subprocess.Popen(
        [sys.executable, str(HERE / "shapes_worker.py"), "classifier", "--connect", p.backend, "--sink", p.results,
         "--detector", detector, "--name", name, "--stats", str(daemons.stats_path(name))],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def test_two_workers_out_of_order_keep_one_id_per_object(pipeline_factory, daemons, tmp_path: Path) -> None:
    clip = tmp_path / "shapes.mp4"
    make_sample_clip(clip, seconds=3, covered=None)  # the box and the disc cross, never touching
    p = pipeline_factory(until="gen")
    start_shapes_worker(daemons, p, "worker-fast", "shapes")
    start_shapes_worker(daemons, p, "worker-slow", "shapes:delay=0.05")  # its answers come a few frames late
    p.extractor("gen", str(clip))
    assert daemons.wait("sink", timeout=180) == 0
    assert daemons.wait("extractor-gen") == 0
    for name in ("worker-fast", "worker-slow", "ventilator"):
        assert daemons.stop(name) == 0

    sink = daemons.stats("sink")
    assert sink["results"]["gen"] == 75
    assert daemons.stats("worker-slow")["processed"]["gen"] > 0
    assert sink["reordered"]["gen"] > 0  # results did come out of order
    events = p.events_written()
    assert not [e for e in events if e["type"] == "detection"]  # no event per frame
    objects: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if e["type"] == "object":
            objects[e["object_id"]].append(e)
    assert sorted(evs[0]["label"] for evs in objects.values()) == ["box", "disc"]  # one object each
    for evs in objects.values():
        phases = [e["phase"] for e in evs]
        assert phases[0] == "start" and phases[-1] == "end" and phases.count("start") == phases.count("end") == 1
        assert evs[0]["id"] == evs[0]["object_id"] and len({e["label"] for e in evs}) == 1
        end = evs[-1]
        assert end["first_seen"] < end["last_seen"] and end["top_score"] == 0.9
        snap = p.data_dir / end["snapshot"]  # relative to the data dir
        assert snap.is_file() and snap.with_name(snap.name.replace(".jpg", ".clean.jpg")).is_file()
        assert snap.with_name(snap.name.replace(".jpg", ".thumb.jpg")).is_file()
    box = next(evs for evs in objects.values() if evs[0]["label"] == "box")
    assert box[-1]["box"][0] > box[0]["box"][0]  # it moved right, and it is the same object


def test_people_walking_give_one_event_chain_per_person_not_per_frame(pipeline_factory, daemons) -> None:
    clip = shared_clip("people-walking.mp4")
    model = shared_model("coco-ssd-mobilenetv2.onnx")
    p = pipeline_factory(until="street")
    for name in ("worker-1", "worker-2"):
        p.worker(name, f"onnx:{model}", "--classes", "person,car", "--confidence", "0.5")
    p.extractor("street", str(clip), extra=("--fps", "5"))
    assert daemons.wait("sink", timeout=600) == 0
    assert daemons.wait("extractor-street") == 0
    sink = daemons.stats("sink")
    events = p.events_written()
    objects: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if e["type"] == "object":
            objects[e["object_id"]].append(e)
    people = [evs for evs in objects.values() if evs[-1]["label"] == "person"]
    spans = [evs[-1]["last_seen"] - evs[-1]["first_seen"] for evs in people]
    # about 2,000 person boxes in 398 frames become a few dozen people, each a start ... an end;
    # walkers crossing the square are followed for many seconds, not re-found at every frame
    assert 10 <= len(people) <= 90, len(people)
    assert sum(1 for s in spans if s >= 10) >= 5, sorted(spans)
    assert sink["objects"]["street"]["start"] == sink["objects"]["street"]["end"] == len(objects)
    assert all([e["phase"] for e in evs].count("start") == 1 and evs[-1]["phase"] == "end" for evs in objects.values())
    assert len(events) < sink["results"]["street"]  # not an event per frame
