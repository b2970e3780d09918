"""The sink on a disk that fills up, and the bounds that keep it from filling one: real daemons,
a real Mosquitto, a real (small) tmpfs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from camwire.sink.store.status_db import read_sink, read_status
from conftest import ROOT, SHAPES_RULES, fill
from mqtt import Subscriber

STATES = {"camera_online": "online", "camera_offline": "offline", "camera_covered": "covered",
          "camera_uncovered": "online"}
MOTION = {"motion_start": "ON", "motion_end": "OFF"}
WORKER = "shapes+covered"  # the sample clip's moving shapes as tracked objects, and its covered stretch


def start_shapes_worker(daemons, p, name: str, detector: str = WORKER) -> None:
    """A worker with tests/pipeline/shapes_worker.py's ``shapes`` detector, started and stopped like the others."""
    log = open(daemons.tmp / f"{name}.log", "wb")
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    daemons.procs[name] = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "pipeline" / "shapes_worker.py"), "classifier", "--connect", p.backend,
         "--sink", p.results, "--detector", detector, "--name", name, "--stats", str(daemons.stats_path(name))],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def take_camera(live: Subscriber, camera: str, want: dict[str, int]) -> list[tuple[str, str]]:
    """(subtopic, payload) of the MQTT messages under ``camwire/<camera>/``, in the order they
    came, until ``want[subtopic]`` of each have come (its events, its retained ``state`` and
    ``motion``; Home Assistant's counts come among them)."""
    out: list[tuple[str, str]] = []
    while any(sum(topic == t for t, _ in out) < n for topic, n in want.items()):
        [(topic, body, _)] = live.take(1)
        if topic.startswith(f"camwire/{camera}/"):
            out.append((topic.removeprefix(f"camwire/{camera}/"), body))
    return out


def wait_row(path: Path, camera: str, predicate, timeout: float = 90.0) -> dict:
    """The camera's row in status.db once it matches (the sink rewrites it every second)."""
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        try:
            row = next((r for r in read_status(path)[0] if r["camera"] == camera), None)
        except Exception:  # noqa: BLE001 - not created yet
            row = None
        if row is not None and predicate(row):
            return row
        time.sleep(0.1)  # SQLite has no change notification to await
    raise AssertionError(f"status of {camera} never matched; last: {row}")


def wait_sink_row(path: Path, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (row := read_sink(path)) is not None:
                return row
        except Exception:  # noqa: BLE001 - not created yet
            pass
        time.sleep(0.1)
    raise AssertionError("the sink never wrote its row")


def test_full_disk_loses_no_event_and_a_restart_runs_on_it(pipeline_factory, daemons, broker: int,  # noqa: F811
                                                           small_disk, sample_clip: Path) -> None:
    disk = small_disk("4m")
    events_file, data = disk / "events.jsonl", disk / "data"
    sink_args = ("--events", str(events_file), "--data-dir", str(data),
                 "--mqtt", f"mqtt://127.0.0.1:{broker}/camwire", "--min-free", "0")
    live = Subscriber(broker, "camwire/#")
    p = pipeline_factory(until="gate", sink_args=sink_args)
    wait_sink_row(data / "status.db")
    filler = fill(disk)  # from here on nothing new fits

    start_shapes_worker(daemons, p, "worker-1")
    # every sampled frame to the worker (not only those with motion): a known number of results
    p.extractor("gate", str(sample_clip), extra=("--every", "5", "--detect", "always"))
    assert daemons.wait("sink", timeout=120) == 0  # it did not crash: it drained and exited
    stats = daemons.stats("sink")
    total = sum(stats["events"].values())
    assert total >= 6 and {"object", "motion_start", "camera_covered"} <= set(stats["events"])
    assert stats["objects"]["gate"]["start"] == stats["objects"]["gate"]["end"] >= 2  # the box and the disc at least
    got = [p.events.wait_for(lambda e: True, since=i) for i in range(total)]  # every one on PUB
    assert len({e["id"] for e in got}) == total

    # every event worth telling reached the broker (an object's update with a higher score alone is
    # not: sink.outputs.mqtt), as JSON, in order, with the camera's state and motion retained
    told = [e for e in got if e["type"] != "object" or e["phase"] != "update" or set(e["changes"]) - {"score"}]
    states = [STATES[e["type"]] for e in told if e["type"] in STATES]
    motion = [MOTION[e["type"]] for e in told if e["type"] in MOTION]
    types = Counter(e["type"] for e in told)
    mqtt = take_camera(live, "gate", {**types, "state": len(states), "motion": len(motion)})
    live.close()
    assert [json.loads(body)["id"] for topic, body in mqtt if topic in types] == [e["id"] for e in told]
    assert [body for topic, body in mqtt if topic == "state"] == states
    assert [body for topic, body in mqtt if topic == "motion"] == motion
    assert all(e["snapshot"] is None for e in got)  # none could be written, and none is named

    # and every failed write was counted, none crashed anything
    assert stats["write_errors"]["events"] == total  # the file had no room for a single line
    assert stats["write_errors"]["snapshots"] >= 1 and "written" not in stats.get("snapshots", {})
    assert not events_file.exists() or events_file.stat().st_size == 0
    assert not list(data.rglob("*.jpg"))
    shown = subprocess.run([sys.executable, "-m", "camwire", "status", "--dir", str(data), "--json"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    sink_row = json.loads(shown)["sink"]  # status.db kept working in its own pages: it says so too
    assert sink_row["write_errors"]["events"] == total and "No space left" in sink_row["last_write_error"]

    # restarted on the still full disk, with the default free-space floor: it starts and runs
    fill(disk)  # (the space status.db's WAL gave back at the clean exit, taken again)
    argv = ["sink", "--bind", p.results, "--events", str(events_file), "--publish", p.events_pub,
            "--data-dir", str(data), "--exit-when-drained", "again", "--rules", str(SHAPES_RULES)]
    daemons.start("sink-again", *argv)
    p.extractor("again", str(sample_clip), extra=("--every", "5", "--detect", "always"))
    p.events.wait_for(lambda e: e["camera"] == "again" and e["type"] == "camera_covered")
    p.events.wait_for(lambda e: e["camera"] == "again" and e["type"] == "object" and e["phase"] == "end")
    assert daemons.wait("sink-again", timeout=120) == 0
    again = daemons.stats("sink-again")
    assert again["results"]["again"] == 60 and again["write_errors"]["events"] == sum(again["events"].values())
    assert again["snapshots"]["low_space"] >= 1  # under --min-free: not even tried
    filler.unlink()


def test_snapshots_and_events_file_stay_bounded_and_sighup_reopens(pipeline_factory, daemons, tmp_path: Path,
                                                                   sample_clip: Path) -> None:
    cap = 120_000  # a few objects' snapshots (each drawn, clean and a thumbnail)
    # one event per tracked object's start, update and end: about 7 kB of lines from the clip
    p = pipeline_factory(sink_args=("--events-max-bytes", "1k", "--snapshot-max-bytes", str(cap)))
    start_shapes_worker(daemons, p, "worker-1")
    p.extractor("a", str(sample_clip), extra=("--every", "2", "--detect", "always"))
    status = p.data_dir / "status.db"
    wait_row(status, "a", lambda r: r["state"] == "ended" and r["results"] == 150)
    snaps = list(p.data_dir.rglob("*.jpg"))
    assert snaps and sum(f.stat().st_size for f in p.data_dir.joinpath("snapshots").rglob("*") if f.is_file()) <= cap
    rotated = sorted(tmp_path.glob("events.jsonl*"))
    assert [f.name for f in rotated] == ["events.jsonl", "events.jsonl.1", "events.jsonl.2", "events.jsonl.3"]
    kept = []
    for f in rotated:
        assert f.stat().st_size <= 1024
        kept += [json.loads(line) for line in f.read_text().splitlines()]  # whole lines
    assert all(e["camera"] == "a" for e in kept) and "object" in {e["type"] for e in kept}

    # logrotate: move the file away, then SIGHUP; what comes next goes to a new file
    moved = tmp_path / "events.jsonl.moved"
    p.events_file.rename(moved)
    before = moved.read_bytes()
    daemons.procs["sink"].send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while not p.events_file.exists():  # the sink creates it again on SIGHUP
        assert time.monotonic() < deadline, "events file not reopened"
        time.sleep(0.05)
    p.extractor("b", str(sample_clip), extra=("--every", "5", "--detect", "always"))
    p.events.wait_for(lambda e: e["camera"] == "b" and e["type"] == "camera_covered")
    wait_row(status, "b", lambda r: r["state"] == "ended" and r["results"] == 60)
    assert moved.read_bytes() == before  # the old file is left alone
    lines = [json.loads(x) for f in tmp_path.glob("events.jsonl*") if f != moved for x in f.read_text().splitlines()]
    assert lines and json.loads(p.events_file.read_text().splitlines()[-1])["camera"] == "b"
    assert daemons.stop("sink") == 0
    stats = daemons.stats("sink")
    assert stats["reloads"]["applied"] == 1
    assert stats["snapshots"]["deleted"] >= 1  # the cap was reached, and held
