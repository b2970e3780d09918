"""Routing by detector across real processes: a ventilator, three workers (two serving one
detector, one another: the same kind with other thresholds, named by --serves) and real
extractors on the sample clip. Each camera's frames reach only
the workers serving its detector (a camera wanting two: one worker of each, every frame); a
camera whose detector nobody serves is counted and shown in status.db and ``camwire status``, and
the other cameras still flow whole."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from camwire.sink.store.status_db import read_status
from conftest import ROOT

EVERY = ("--every", "5")  # 60 of the clip's 300 frames per camera


def wait_status(path: Path, done: Callable[[dict[str, dict[str, Any]], dict[str, dict[str, Any]]], bool],
                timeout: float = 120.0) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """status.db's cameras and workers (by name) once ``done`` holds of them; the sink rewrites the
    file every second, so it is read as it changes (a file has no event to await)."""
    deadline = time.monotonic() + timeout
    cameras: dict[str, dict[str, Any]] = {}
    workers: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        if path.exists():
            try:
                rows = read_status(path)
            except sqlite3.Error:  # not created yet, or its tables not yet
                rows = ([], [])
            cameras = {c["camera"]: c for c in rows[0]}
            workers = {w["name"]: w for w in rows[1]}
            if done(cameras, workers):
                return cameras, workers
        time.sleep(0.1)
    raise AssertionError(f"status.db never showed it within {timeout}s: cameras {cameras}, workers {workers}")


def test_each_cameras_frames_reach_only_the_workers_serving_its_detector(
        pipeline_factory, daemons, sample_clip: Path) -> None:
    p = pipeline_factory(vent_args=("--route", "a=covered", "--route", "b=lens", "--route", "c=hog",
                                    "--route", "d=covered", "--route", "d=lens"))
    p.worker("cov-1", "covered")  # serves its spec as written
    p.worker("cov-2", "covered")
    p.worker("lens-1", "covered:frames=2", "--serves", "lens")  # other thresholds: another detector
    status_db = p.data_dir / "status.db"
    # every worker known to the ventilator (it reports them, with their detectors, to the sink)
    # before any frame comes: frames for a detector nobody serves yet would be counted unserved
    wait_status(status_db, lambda _c, w: {n: r["detector"] for n, r in w.items() if r["updated_ts"]} == {
        "cov-1": "covered", "cov-2": "covered", "lens-1": "lens"})
    for camera in "abcd":
        p.extractor(camera, str(sample_clip), extra=EVERY)
    for camera in "abcd":
        assert daemons.wait(f"extractor-{camera}", timeout=120) == 0
    sent = {camera: daemons.stats(f"extractor-{camera}")[camera]["sent"] for camera in "abcd"}

    cameras, _ = wait_status(status_db, lambda c, _w: (
        c.get("a", {}).get("results") == sent["a"] and c.get("b", {}).get("results") == sent["b"]
        and c.get("d", {}).get("results") == 2 * sent["d"] and c.get("c", {}).get("unserved") == sent["c"]))
    assert cameras["c"]["unserved_detectors"] == "hog" and cameras["c"]["results"] == 0
    assert not cameras["a"]["unserved_detectors"] and not cameras["b"]["unserved_detectors"]
    shown = subprocess.run([sys.executable, "-m", "camwire", "status", "--dir", str(p.data_dir)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    line_c = next(line for line in shown.stdout.splitlines() if line.startswith("c "))
    assert f"no worker serves hog ({sent['c']} frames unserved)" in line_c
    assert "covered" in next(line for line in shown.stdout.splitlines() if line.startswith("cov-1 "))

    for name in ("cov-1", "cov-2", "lens-1", "ventilator", "sink"):
        assert daemons.stop(name) == 0
    processed = {name: daemons.stats(name).get("processed", {}) for name in ("cov-1", "cov-2", "lens-1")}
    assert set(processed["cov-1"]) | set(processed["cov-2"]) == {"a", "d"}  # covered: cameras a and d alone
    for camera in "ad":
        assert processed["cov-1"].get(camera, 0) + processed["cov-2"].get(camera, 0) == sent[camera]
    assert processed["lens-1"] == {"b": sent["b"], "d": sent["d"]}  # lens: b and d alone, every frame
    vent = daemons.stats("ventilator")
    assert vent["unserved"] == {"c": {"hog": sent["c"]}}
    assert vent["received"] == sent
    assert vent["completed"] == {"a": sent["a"], "b": sent["b"], "d": 2 * sent["d"]}  # d: once per detector
