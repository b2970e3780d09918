"""What one frame costs each daemon on one host, before and after shared memory and detection size.

A real scene (``../shared/media/people-walking.mp4``, 768x576, scaled to 1920x1080 H.264 once
at the start, as a 1080p camera would send it; the output says so) goes through real daemons as
separate processes: an extractor reading the file as fast as the pool takes it, the ventilator,
one worker with the COCO SSD of ``../shared/models`` (or ``hog`` when the model is absent: the
output says which), and the sink (writing snapshots). These ways, alternating in one run:

- ``socket``: the pixels in the message, over TCP loopback (``--shm off``): camwire before;
- ``shm``: the pixels in the extractor's shared-memory ring, the header alone on the wire;
- ``shm+300``: the same, the frames resized once by the extractor to the SSD's 300 px side
  (a camera's ``detect_size``), snapshots at that size (``--source-slots 0``);
- ``shm+300 src``: the same, with the source ring (snapshots at 1920x1080, the default);
- ``shm+300 rgb``, ``shm+300 yuv``: ``shm+300`` in the pixel format the SSD takes (RGB: no flip)
  and in YUV 4:2:0 (no colour conversion in the extractor; the worker converts to RGB at 300 px).

For each: CPU milliseconds per frame of the extractor, the ventilator, the worker and the sink
(user + system, from /proc and the extractor's rusage; the others' from the moment the worker's
model is loaded, the extractor's whole life, its start-up included), frames per second through the pool, and the
bytes per frame on the extractor -> ventilator -> worker wire.

Run: ``.venv/bin/python bench/frame_cost.py [--rounds N] [--frames N] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camwire.common import wire  # noqa: E402

SHARED = ROOT.parent / "shared"
CLIP = SHARED / "media" / "people-walking.mp4"
SSD = SHARED / "models" / "coco-ssd-mobilenetv2.onnx"
SMALL = ("--shm", "on", "--detect-size", "300")
CASES = {"socket": ("--shm", "off"), "shm": ("--shm", "on"), "shm+300": (*SMALL, "--source-slots", "0"),
         "shm+300 src": SMALL, "shm+300 rgb": (*SMALL, "--source-slots", "0", "--pixel-format", "rgb"),
         "shm+300 yuv": (*SMALL, "--source-slots", "0", "--pixel-format", "yuv420")}
DAEMONS = ("extractor", "ventilator", "worker", "sink")
TICK = os.sysconf("SC_CLK_TCK")


def upscale(src: Path, dst: Path, frames: int) -> None:
    """``frames`` of ``src`` as 1920x1080 H.264 (a key frame every 2 s at its 10 fps)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {"g": "20", "preset": "veryfast"}
        for i, frame in enumerate(inp.decode(video=0)):
            if i >= frames:
                break
            for packet in stream.encode(frame.reformat(width=1920, height=1080, format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def start(tmp: Path, name: str, *argv: str) -> subprocess.Popen:
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json"}
    return subprocess.Popen([sys.executable, "-m", "camwire", *argv, "--stats", str(tmp / f"{name}.json")],
                            stdout=open(tmp / f"{name}.log", "wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def wire_bytes(case: str) -> int:
    """Bytes per frame on extractor -> ventilator and ventilator -> worker (each hop the same)."""
    w, h = (300, 169) if "+300" in case else (1920, 1080)
    ref = wire.ShmRef(host="b2a2b3c5-62f1-427a-8142-392bafab68f5-1b", ring="camwire-cam-123456-0123abcd",
                      slot=3, gen=12345)
    header = wire.FrameHeader(camera="cam", seq=12345, ts_ns=time.time_ns(), width=w, height=h, pts=1234.5, prev=12344,
                              shm=None if case == "socket" else ref, source=(1920, 1080) if w != 1920 else None)
    return len(wire.pack(header)) + (w * h * 3 if case == "socket" else 0)


def run_case(case: str, clip: Path, detector: str, tmp: Path) -> dict:
    frontend, backend, results = (f"tcp://127.0.0.1:{p}" for p in ports(3))
    procs = {}
    try:
        procs["sink"] = start(tmp, "sink", "sink", "--bind", results, "--events", str(tmp / "events.jsonl"),
                              "--data-dir", str(tmp / "data"), "--exit-when-drained", "cam")
        procs["ventilator"] = start(tmp, "ventilator", "ventilator", "--frontend", frontend, "--backend", backend)
        procs["worker"] = start(tmp, "worker", "classifier", "--connect", backend, "--sink", results, "--detector",
                                detector, "--threads", "1", "--name", "w")
        ready = time.monotonic() + 120
        while b"classifier started" not in (tmp / "worker.log").read_bytes():  # its model loaded
            if time.monotonic() > ready or procs["worker"].poll() is not None:
                raise RuntimeError(f"the worker did not start: {(tmp / 'worker.log').read_text()[-2000:]}")
            time.sleep(0.1)
        base = {name: cpu_s(procs[name].pid) for name in ("ventilator", "worker", "sink")}
        t0 = time.monotonic()
        procs["extractor"] = start(tmp, "extractor", "extractor", "--camera", "cam", "--source", str(clip), "--push",
                                   frontend, "--detect", "always", *CASES[case])
        _, status, usage = os.wait4(procs["extractor"].pid, 0)
        procs["extractor"].returncode = os.waitstatus_to_exitcode(status)
        sink_cpu = sink_cpu_at_exit(procs["sink"]) - base["sink"]
        elapsed = time.monotonic() - t0
        vent_cpu = cpu_s(procs["ventilator"].pid) - base["ventilator"]
        worker_cpu = cpu_s(procs["worker"].pid) - base["worker"]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    sent = json.loads((tmp / "extractor.json").read_text())["cam"]["sent"]
    shots = json.loads((tmp / "sink.json").read_text()).get("snapshot_pixels", {})
    return {"frames": sent, "fps": round(sent / elapsed, 2),
            "snapshots": {k: shots[k] for k in ("encoded", "source", "source_gone") if k in shots},
            "cpu_ms_per_frame": {"extractor": round(1000 * (usage.ru_utime + usage.ru_stime) / sent, 2),
                                 "ventilator": round(1000 * vent_cpu / sent, 2),
                                 "worker": round(1000 * worker_cpu / sent, 2),
                                 "sink": round(1000 * sink_cpu / sent, 2)},
            "wire_bytes_per_frame": wire_bytes(case)}


def sink_cpu_at_exit(proc: subprocess.Popen) -> float:
    """The sink's CPU seconds when it exits (drained), read by wait4."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def ports(n: int) -> list[int]:
    """``n`` free TCP ports, held until all are chosen so none repeats (released just before the
    daemons bind them; a bench, not a test)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    chosen = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--frames", type=int, default=200, help="frames of the clip to use")
    ap.add_argument("--out")
    args = ap.parse_args()
    if not CLIP.exists():
        sys.exit(f"skipped: {CLIP} is absent")
    detector = f"onnx:{SSD}" if SSD.exists() else "hog"
    out: dict = {"detector": "COCO SSD" if SSD.exists() else "hog (the SSD is absent)",
                 "clip": f"{CLIP.name}, first {args.frames} frames scaled to 1920x1080 H.264", "rounds": []}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        clip = tmp / "people-1080p.mp4"
        upscale(CLIP, clip, args.frames)
        for r in range(args.rounds):
            for case in CASES:
                run = tmp / f"{case}-{r}"
                run.mkdir()
                result = run_case(case, clip, detector, run)
                out["rounds"].append({"case": case, **result})
                print(json.dumps({"case": case, **result}), flush=True)
    summary = {}
    for case in CASES:
        rows = [x for x in out["rounds"] if x["case"] == case]
        summary[case] = {"fps": float(np.median([x["fps"] for x in rows])),
                         **{k: float(np.median([x["cpu_ms_per_frame"][k] for x in rows])) for k in DAEMONS},
                         "wire_bytes": rows[0]["wire_bytes_per_frame"]}
    out["median"] = summary
    print(f"{'case':12} {'frames/s':>9} {'extractor':>10} {'ventilator':>11} {'worker':>8} {'sink':>6} "
          f"{'bytes/frame':>12}")
    for case, s in summary.items():
        print(f"{case:12} {s['fps']:9.2f} {s['extractor']:10.2f} {s['ventilator']:11.2f} {s['worker']:8.2f} "
              f"{s['sink']:6.2f} {s['wire_bytes']:12d}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
