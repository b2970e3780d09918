"""Events per tracked object, and what the extractor's motion gate saves, on real clips.

For each model (``--models``: ``builtin``, camwire's YOLOX-Nano, and ``ssd``, the COCO SSD of
``../shared/models/``, skipped when absent) and each clip of ``../shared/media/``
(``people-walking.mp4``, ``car-detection.mp4``; a clip that is absent is skipped), a real pipeline of
camwire processes over TCP loopback: one extractor (``--fps 5``, the file read as fast as the
pool takes it, not in real time), the ventilator, the sink (its rules the defaults, or
``--rules FILE``; publishing to a real Mosquitto, whose messages are counted), and a worker running
the model and ``covered`` side by side (``--detector onnx:MODEL+covered --confidence C``;
``--workers routed`` instead starts a model worker and a ``covered`` worker
and routes the camera to both, ``--route CAMERA=objects --route CAMERA=covered``). It runs once
with ``--detect always`` and once with ``--detect motion`` (the default: a frame goes to the
pool only while there is motion, plus a heartbeat every 10 s), until the sink has every result
(``--exit-when-drained``).

Per clip and mode: source frames, frames sent to the pool, ``skipped/no_motion``, results (and
``late`` ones, not tracked), ``object`` events by phase, distinct objects per label,
``ends_inside`` (objects' first and last boxes that lie inside the picture, not at an edge or at
the clip's start or end: a walker found late or lost early, so a crossing in pieces or two
walkers swapped; no ground truth needed), ``crossings_counted`` (person crossings counted by hand,
from ``bench/<clip>.crossings.csv`` where there is one), ``camera_covered`` alarms, ``motion_start``/``motion_end``, wall time (extractor start to sink
exit; the clock starts once the workers are connected, their model loaded), and the SSD
model worker's CPU and busy seconds, and its CPU per result. With the model: ``post`` (person objects
standing on people-walking's fixed post, which YOLOX takes for a person: the goal is none) and
``suggested_mask`` events; events and MQTT messages per minute of video (``mqtt_per_min``: every
message the sink published, discovery and states included). Then "no track lost": for each object found without the gate,
whether an object of the same label overlaps it in time with the gate (times as seconds into
the clip, so the two runs compare). ``--out`` also lists every object's label and time span.

Run: ``.venv/bin/python bench/events.py [--models builtin ssd] [--clips NAME ...] [--modes always motion]
[--fps F] [--rules FILE] [--workers combined|routed] [--out FILE] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
MODELS = {"builtin": "onnx", "ssd": f"onnx:{SHARED / 'models' / 'coco-ssd-mobilenetv2.onnx'}"}
CLIPS = ("people-walking.mp4", "car-detection.mp4")
MODES = ("always", "motion")
CAMERA = "cam"
STOP_TIMEOUT_S = 15.0
EDGE_SHARE = 0.05  # a box this close to an edge (share of the side) is at the edge
POST = (40.0, 126.0)  # people-walking.mp4's post with a black sign, top left (a box's centre, source pixels)
POST_NEAR = 20.0  # px

from bench.recorder import free_tcp  # noqa: E402


@dataclass
class Obj:
    """One tracked object as its events tell it; times in seconds into the clip."""

    object_id: str
    label: str
    first: float
    last: float
    ends_inside: int = 0  # of its first and last box, how many lie inside the picture (see inside())


def crossings(clip: Path) -> int | None:
    """How many person crossings a hand count found in ``clip`` (``bench/<stem>.crossings.csv``), or None."""
    path = Path(__file__).with_name(f"{clip.stem}.crossings.csv")
    if not path.is_file():
        return None
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return len(lines) - 1  # less the header


def inside(box: list[float] | None, size: tuple[int, int]) -> bool:
    """Is a box clear of every edge of the picture by EDGE_SHARE of its side? A walker's object
    should start and end at an edge (or at the clip's start or end); one that starts or ends
    inside is a walker found late or lost early: a fragment of a crossing, or a swap."""
    if box is None:
        return False
    w, h = size
    mx, my = w * EDGE_SHARE, h * EDGE_SHARE
    return box[0] > mx and box[1] > my and box[2] < w - mx and box[3] < h - my


def on_post(box: list[float] | tuple) -> bool:
    """Does the box stand on people-walking's post (its centre within POST_NEAR of POST)?"""
    return abs((box[0] + box[2]) / 2 - POST[0]) < POST_NEAR and abs((box[1] + box[3]) / 2 - POST[1]) < POST_NEAR


def source_size(clip: Path) -> tuple[int, int]:
    with av.open(str(clip)) as c:
        return c.streams.video[0].width, c.streams.video[0].height


def source_rate(clip: Path) -> float:
    with av.open(str(clip)) as c:
        return float(c.streams.video[0].average_rate)


def clip_seconds(clip: Path) -> float:
    """The clip's length in seconds (its frames over its rate)."""
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        return s.frames / float(s.average_rate)


def wait_cpu(proc: subprocess.Popen, timeout: float) -> float | None:
    """Wait up to ``timeout`` for a child to exit; the CPU seconds it used, or None if it did not."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)  # the bench's own polling of a child; wait4 has no timeout


def stop(proc: subprocess.Popen) -> float | None:
    """SIGTERM, then the CPU seconds (SIGKILL if it will not stop)."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    cpu = wait_cpu(proc, STOP_TIMEOUT_S) if proc.returncode is None else None
    if cpu is None and proc.returncode is None:
        proc.kill()
        cpu = wait_cpu(proc, STOP_TIMEOUT_S)
    return cpu


def wait_workers(db: Path, names: list[str], procs: dict[str, subprocess.Popen], timeout: float = 300.0) -> None:
    """Until the sink's status.db lists every one of ``names`` as a connected worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited before the run began")
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                    seen = {row[0] for row in con.execute("SELECT name FROM workers WHERE leaving = 0")}
            except sqlite3.OperationalError:  # the sink is creating it
                seen = set()
            if seen >= set(names):
                return
        time.sleep(0.2)  # a file has no event to await
    raise RuntimeError(f"workers {names} not connected within {timeout:.0f}s")


class Broker:
    """Mosquitto on a free port, and a subscriber counting every message the sink publishes."""

    def __init__(self) -> None:
        import paho.mqtt.client as mqtt

        self.port = int(free_tcp().rsplit(":", 1)[1])
        self.proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.topics: Counter[str] = Counter()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda _c, _u, m: self.topics.update([m.topic])
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.connect("127.0.0.1", self.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # mosquitto is opening its port
        self.client.subscribe("camwire/#", qos=1)
        self.client.loop_start()

    def take(self) -> Counter[str]:
        got, self.topics = self.topics, Counter()
        return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self.proc.terminate()
        self.proc.wait(timeout=10)


def run(clip: Path, mode: str, fps: float, confidence: float, workers: str, work: Path,
        timeout: float, model: str = "ssd", rules: str | None = None, broker: Broker | None = None) -> dict[str, Any]:
    """One pipeline, one clip, one mode; the figures, the objects and where the files are."""
    work.mkdir(parents=True)
    spec = MODELS[model]
    frontend, backend, results = free_tcp(), free_tcp(), free_tcp()
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    procs: dict[str, subprocess.Popen] = {}

    def start(name: str, *argv: str) -> None:
        log = open(work / f"{name}.log", "wb")
        procs[name] = subprocess.Popen([sys.executable, "-m", "camwire", *argv, "--stats", str(work / f"{name}.json")],
                                       cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    events_file = work / "events.jsonl"
    sink_flags = (["--rules", rules] if rules else []) + (
        ["--mqtt", f"mqtt://127.0.0.1:{broker.port}/camwire"] if broker else [])
    if broker:
        broker.take()
    start("sink", "sink", "--bind", results, "--events", str(events_file), "--data-dir", str(work / "data"),
          "--exit-when-drained", CAMERA, *sink_flags)
    worker = ["classifier", "--connect", backend, "--sink", results]
    if workers == "routed":
        start("ventilator", "ventilator", "--frontend", frontend, "--backend", backend,
              "--route", f"{CAMERA}=objects", "--route", f"{CAMERA}=covered")
        start("objects", *worker, "--name", "objects", "--detector", spec,
              "--confidence", str(confidence), "--serves", "objects")
        start("covered", *worker, "--name", "covered", "--detector", "covered", "--serves", "covered")
    else:
        start("ventilator", "ventilator", "--frontend", frontend, "--backend", backend)
        start("objects", *worker, "--name", "objects", "--detector", f"{spec}+covered",
              "--confidence", str(confidence))
    cpu: dict[str, float | None] = {}
    try:
        # the clock starts once every worker is connected (its model loaded), as the sink's
        # status.db says from the ventilator's reports
        wait_workers(work / "data" / "status.db", [n for n in ("objects", "covered") if n in procs], procs)
        t0 = time.monotonic()
        start("extractor", "extractor", "--camera", CAMERA, "--source", str(clip), "--push", frontend,
              "--fps", str(fps), "--detect", mode)
        sink_cpu = wait_cpu(procs["sink"], timeout)
        wall = time.monotonic() - t0
        if sink_cpu is not None:
            cpu["sink"] = sink_cpu
    finally:
        for name in ("extractor", "objects", "covered", "ventilator", "sink"):  # pipeline order: workers first
            if name in procs and name not in cpu:
                cpu[name] = stop(procs[name])
    drained = procs["sink"].returncode == 0
    if not drained:
        raise RuntimeError(f"{clip.name} --detect {mode}: the sink did not drain within {timeout:.0f}s "
                           f"(logs in {work})")

    def stats(name: str) -> dict[str, Any]:
        path = work / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    ext, sink, vent = stats("extractor").get(CAMERA, {}), stats("sink"), stats("ventilator")  # extractor: per camera
    ssd = stats("objects")
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    rate = source_rate(clip)
    # each run's capture times start at its own wall clock: a start event's frame gives the origin
    origins = [e["ts"] - e["seq"] / rate for e in events if e["type"] == "object" and e["phase"] == "start"]
    origin = statistics.median(origins) if origins else 0.0
    chains: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if e["type"] == "object":
            chains[e["object_id"]].append(e)
    size, duration = source_size(clip), clip_seconds(clip)
    slack = 2.0 / fps  # seen in the first or last two sampled frames: in view when the clip starts or ends
    objects = [Obj(oid, evs[-1]["label"], evs[-1]["first_seen"] - origin, evs[-1]["last_seen"] - origin,
                   (evs[-1]["first_seen"] - origin > slack and inside(evs[0]["box"], size))
                   + (evs[-1]["last_seen"] - origin < duration - slack and inside(evs[-1]["box"], size)))
               for oid, evs in chains.items()]
    types = Counter(e["type"] for e in events)
    phases = Counter(e["phase"] for e in events if e["type"] == "object")
    post = sum(1 for evs in chains.values() if evs[-1]["label"] == "person" and all(on_post(e["box"]) for e in evs)) \
        if clip.stem == "people-walking" else None
    minutes = duration / 60
    if broker:
        deadline = time.monotonic() + 10
        while broker.topics.get("camwire/available", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # the sink's last word (available: offline, after online) may still be on its way
    mqtt = broker.take() if broker else Counter()

    def cam(tree: dict[str, Any], key: str) -> Any:
        return tree.get(key, {}).get(CAMERA, 0)

    return {
        "model": model, "clip": clip.name, "mode": mode, "fps": fps,
        "source_frames": ext.get("decoded", 0), "sent": ext.get("sent", 0),
        "skipped_no_motion": ext.get("skipped", {}).get("no_motion", 0),
        "results": cam(sink, "results"), "late": cam(sink, "late"),
        "unserved": sum(cam(vent, "unserved").values()) if cam(vent, "unserved") else 0,
        "object_events": {p: phases.get(p, 0) for p in ("start", "update", "end")},
        "objects": dict(sorted(Counter(o.label for o in objects).items(), key=lambda kv: -kv[1])),
        "ends_inside": sum(o.ends_inside for o in objects),
        "crossings_counted": crossings(clip), "post": post, "suggested_mask": types.get("suggested_mask", 0),
        "events_per_min": round(sum(types.values()) / minutes, 1),
        "mqtt_per_min": round(sum(mqtt.values()) / minutes, 1) if broker else None,
        "mqtt_object_per_min": round(mqtt.get(f"camwire/{CAMERA}/object", 0) / minutes, 1) if broker else None,
        "mqtt_snapshot_per_min": round(mqtt.get(f"camwire/{CAMERA}/snapshot", 0) / minutes, 1) if broker else None,
        "camera_covered": types.get("camera_covered", 0),
        "motion_start": types.get("motion_start", 0), "motion_end": types.get("motion_end", 0),
        "events": sum(types.values()),
        "workers": workers, "wall_s": round(wall, 1), "worker_cpu_s": round(cpu["objects"] or 0.0, 1),
        "worker_busy_s": round(ssd.get("busy_seconds", 0.0), 1),
        "cpu_ms_per_result": round(1000 * (cpu["objects"] or 0.0) / max(1, cam(sink, "results")), 1),
        "_objects": objects,
    }


def lost(without: list[Obj], with_gate: list[Obj], slack: float) -> list[Obj]:
    """Objects found without the gate that no object of the same label with the gate overlaps in
    time (give or take ``slack`` seconds: one sampling interval)."""
    return [a for a in without
            if not any(b.label == a.label and b.first <= a.last + slack and a.first <= b.last + slack
                       for b in with_gate)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                    help="builtin: camwire's YOLOX-Nano; ssd: ../shared/models' COCO SSD (default: both)")
    ap.add_argument("--clips", nargs="+", default=list(CLIPS), metavar="NAME", help="files in ../shared/media/")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                    help="--detect always and/or motion (default: both, compared)")
    ap.add_argument("--fps", type=float, default=5.0, help="frames a second sampled towards the pool (default 5)")
    ap.add_argument("--confidence", type=float, default=0.5, help="the model worker's --confidence (default 0.5)")
    ap.add_argument("--rules", metavar="FILE", help="the sink's --rules (default: none, the built-in defaults)")
    ap.add_argument("--no-mqtt", action="store_true", help="no broker: MQTT messages not counted")
    ap.add_argument("--workers", choices=("combined", "routed"), default="combined",
                    help="combined: one worker running onnx:MODEL+covered (default); routed: a model worker and a "
                         "covered worker, the camera routed to both (--route CAMERA=objects --route CAMERA=covered)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds one run may take before it is given up")
    ap.add_argument("--out", help="write the results as JSON here too")
    ap.add_argument("--keep", metavar="DIR", help="keep each run's events, snapshots, logs and stats here")
    args = ap.parse_args()
    models = [m for m in args.models if m == "builtin" or Path(MODELS[m].split(":", 1)[1]).is_file()]
    if not models:
        print("skipped: no model", flush=True)
        return 0
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "fps": args.fps, "confidence": args.confidence, "rules": args.rules, "runs": [], "comparison": []}
    print(f"# {results['machine']}; --fps {args.fps}, worker --confidence {args.confidence}, "
          f"sink --rules {args.rules or '(defaults)'}", flush=True)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="camwire-bench-events-"))
    broker = None if args.no_mqtt else Broker()
    try:
        for model in models:
            for name in args.clips:
                clip = SHARED / "media" / name
                if not clip.is_file():
                    print(f"skipped: no clip at {clip}", flush=True)
                    continue
                pair = {}
                for mode in args.modes:
                    r = run(clip, mode, args.fps, args.confidence, args.workers,
                            base / f"{model}-{clip.stem}-{mode}", args.timeout, model, args.rules, broker)
                    pair[mode] = r.pop("_objects")
                    print(json.dumps(r), flush=True)
                    r["tracked"] = [{"label": o.label, "first_s": round(o.first, 1), "last_s": round(o.last, 1),
                                     "ends_inside": o.ends_inside}
                                    for o in sorted(pair[mode], key=lambda o: o.first)]  # in --out only
                    results["runs"].append(r)
                if set(pair) != set(MODES):
                    continue
                missing = lost(pair["always"], pair["motion"], slack=1.0 / args.fps)
                cmp = {"model": model, "clip": name,
                       "objects_always": len(pair["always"]), "objects_motion": len(pair["motion"]),
                       "lost_with_gate": len(missing),
                       "lost": [{"label": o.label, "first_s": round(o.first, 1), "last_s": round(o.last, 1)}
                                for o in missing],
                       "new_with_gate": len(lost(pair["motion"], pair["always"], slack=1.0 / args.fps))}
                results["comparison"].append(cmp)
                print(json.dumps(cmp), flush=True)
    finally:
        if broker is not None:
            broker.close()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0

if __name__ == "__main__":
    sys.exit(main())
