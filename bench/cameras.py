"""Many cameras: one extractor process for all of them (``--config``) against one process per camera.

N cameras, each the same 640x360 25 fps H.264 clip read in real time (as a camera would be),
``--every 5`` towards the classifiers (a PULL here that only counts). Measured side by side in
one run: the CPU seconds all extractor processes used (user + system, from ``wait4``) per
camera-minute, their resident memory summed half-way through, and the frames each way sent.
``camwire-extractor.service`` (one process) and ``camwire-extractor@<camera>`` (one each) are
the two ways to deploy; this says what each costs.

Run: ``.venv/bin/python bench/cameras.py [--cameras 4 8] [--seconds S] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.recorder import cpu_of, free_tcp  # noqa: E402
from camwire.sample import make_sample_clip  # noqa: E402
from camwire.common import wire  # noqa: E402


def collect(addr: str, cameras: int, ended: threading.Event, counts: dict) -> None:
    """Count frames per camera until every camera's eos has come."""
    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(addr)
    eos = 0
    while eos < cameras:
        if not pull.poll(60_000):
            break
        parts = pull.recv_multipart()
        head = wire.unpack(parts[0])
        if isinstance(head, wire.FrameHeader):
            counts[head.camera] = counts.get(head.camera, 0) + 1
        elif isinstance(head, wire.Eos):
            eos += 1
    pull.close()
    ended.set()


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def run(mode: str, n: int, clip: Path, seconds: float, work: Path) -> dict:
    push = free_tcp()
    ended, counts = threading.Event(), {}
    t = threading.Thread(target=collect, args=(push, n, ended, counts), daemon=True)
    t.start()
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json"}
    cmd = [sys.executable, "-m", "camwire", "extractor"]
    names = [f"cam{i}" for i in range(n)]
    if mode == "one process":
        config = work / f"cameras-{n}.toml"
        config.write_text("".join(f'[cameras.{c}]\nurl = "{clip}"\nrealtime = true\nevery = 5\n\n' for c in names))
        procs = [subprocess.Popen([*cmd, "--config", str(config), "--push", push], cwd=ROOT, env=env,
                                  stderr=subprocess.DEVNULL)]
    else:
        procs = [subprocess.Popen([*cmd, "--camera", c, "--source", str(clip), "--push", push, "--realtime",
                                   "--every", "5"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL) for c in names]
    time.sleep(seconds / 2)  # the bench's clock, not a synchronisation: memory is read mid-run
    rss = rss_mb([p.pid for p in procs])
    ended.wait(seconds * 4)
    if mode == "one process":
        procs[0].send_signal(signal.SIGTERM)  # with --config it serves on, waiting for changes
    cpu = sum(cpu_of(p) for p in procs)
    t.join()
    return {"mode": mode, "cameras": n, "cpu_s_per_camera_min": round(cpu * 60 / seconds / n, 2),
            "rss_mb": round(rss), "frames_sent": sum(counts.values()), "expected": n * int(seconds * 25 / 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--cameras", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the clip each camera reads")
    ap.add_argument("--out", help="write the results as JSON here too")
    args = ap.parse_args()
    results = {"machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
               "seconds": args.seconds, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = work / "cam.mp4"
        make_sample_clip(clip, seconds=args.seconds, width=640, height=360, covered=None)
        for n in args.cameras:
            pair = [run(mode, n, clip, args.seconds, work) for mode in ("one process", "process per camera")]
            for r in pair:
                results["runs"].append(r)
                print(json.dumps(r), flush=True)
            one, each = pair
            cpu = each["cpu_s_per_camera_min"] / one["cpu_s_per_camera_min"]
            print(f"{n} cameras, process per camera / one process: CPU {cpu:.2f}x, "
                  f"memory {each['rss_mb'] / one['rss_mb']:.1f}x", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
