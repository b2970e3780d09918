"""How many frames one ventilator routes, and what each costs it: the figures that size a group of
cameras per ventilator (README, "Several ventilators, several sinks").

A real ventilator (``python -m camwire ventilator``) between two processes of this script over
TCP loopback: a feeder pushing frames of ``--cameras`` cameras round-robin as fast as the
ventilator takes them (``live=False``, a file's frames: none superseded, the feeder held back by
the ventilator's paused frontend, so the ventilator is the bottleneck), and a stand-in worker
pool (``--workers`` DEALERs in one process) that answers every frame at once with its done and a
new credit, as a worker with an instant detector would. Per case: frames/s through the ventilator
over ``--seconds`` after 1 s of warm-up, and the ventilator's CPU (user + system, from /proc) per
frame; ``frames per core-second`` = 1000 / that, what a core given to the ventilator alone routes.

Cases, the frame's pixels in the message (as they travel to a worker on another host):
``header`` (16x16, 768 bytes: about what a frame in shared memory costs, whose header alone
crosses), ``360p`` (640x360 raw, 0.7 MB), ``1080p`` (1920x1080 raw, 6.2 MB: a link's ceiling for
raw frames). The feeder, the stand-in workers and the ventilator share the host's cores.

Run: ``.venv/bin/python bench/ventilator.py [--seconds S] [--rounds N] [--cameras N] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camwire.common import wire  # noqa: E402

CASES = {"header": (16, 16), "360p": (640, 360), "1080p": (1920, 1080)}
TICK = os.sysconf("SC_CLK_TCK")
WINDOW = 4  # credits each stand-in worker keeps out


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def free_addr() -> str:
    """A loopback TCP address free now (the bench's own machine; not the tests' allocator)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def feeder(frontend: str, width: int, height: int, cameras: int, stop: mp.Event) -> None:
    """Frames of ``cameras`` cameras round-robin, as fast as the ventilator takes them."""
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.setsockopt(zmq.SNDHWM, 8)
    push.connect(frontend)
    pixels = bytes(width * height * 3)
    seq = 0
    while not stop.is_set():
        for c in range(cameras):
            header = wire.FrameHeader(camera=f"cam{c}", seq=seq, ts_ns=time.time_ns(), width=width, height=height,
                                      live=False)
            while not stop.is_set():
                try:
                    push.send_multipart(wire.frame_parts(header, pixels), flags=zmq.NOBLOCK, copy=False)
                    break
                except zmq.Again:
                    push.poll(100, zmq.POLLOUT)
        seq += 1
    ctx.destroy(linger=0)


def workers(backend: str, n: int, counter: mp.Value, stop: mp.Event) -> None:
    """``n`` stand-in workers: each frame answered at once, its done and one credit back."""
    ctx = zmq.Context()
    poller = zmq.Poller()
    socks = []
    for i in range(n):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IDENTITY, f"w{i}".encode())
        sock.connect(backend)
        sock.send(wire.pack(wire.Ready(worker=f"w{i}", credits=WINDOW)))
        poller.register(sock, zmq.POLLIN)
        socks.append(sock)
    done = 0
    next_beat = 0.0
    while not stop.is_set():
        if time.monotonic() >= next_beat:  # alive: the ventilator forgets a silent worker
            next_beat = time.monotonic() + 0.5
            for i, sock in enumerate(socks):
                sock.send(wire.pack(wire.Heartbeat(worker=f"w{i}")))
        for sock, _ in poller.poll(100):
            while True:
                try:
                    parts = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                if len(parts) != 2:
                    continue  # heartbeats, the pool's report
                header = wire.unpack(parts[0].buffer)
                sock.send(wire.pack(wire.Ready(worker="w", credits=1, done=[(header.camera, header.seq)])))
                done += 1
        counter.value = done
    ctx.destroy(linger=0)


def run_case(name: str, cameras: int, n_workers: int, seconds: float, work: Path) -> dict:
    width, height = CASES[name]
    frontend, backend = free_addr(), free_addr()
    log = open(work / f"ventilator-{name}.log", "wb")
    vent = subprocess.Popen([sys.executable, "-m", "camwire", "ventilator", "--frontend", frontend, "--backend",
                             backend, "--max-cameras", str(max(cameras, 64))], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "CAMWIRE_LOG_FORMAT": "json"})
    stop, counter = mp.Event(), mp.Value("q", 0)
    procs = [mp.Process(target=workers, args=(backend, n_workers, counter, stop)),
             mp.Process(target=feeder, args=(frontend, width, height, cameras, stop))]
    for p in procs:
        p.start()
    try:
        deadline = time.monotonic() + 60
        while counter.value == 0:  # the ventilator is up and frames flow
            assert time.monotonic() < deadline, "no frame came through in 60 s"
            time.sleep(0.05)
        time.sleep(1.0)  # warm-up
        n0, c0, t0 = counter.value, cpu_s(vent.pid), time.monotonic()
        time.sleep(seconds)
        n1, c1, t1 = counter.value, cpu_s(vent.pid), time.monotonic()
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=10)
        vent.terminate()
        vent.wait(timeout=15)
    frames = n1 - n0
    cpu_ms = 1000 * (c1 - c0) / frames
    return {"case": name, "bytes": width * height * 3, "frames_per_s": round(frames / (t1 - t0), 1),
            "ventilator_cpu_share": round((c1 - c0) / (t1 - t0), 2), "ventilator_cpu_ms_per_frame": round(cpu_ms, 3),
            "frames_per_core_second": round(1000 / cpu_ms)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cameras", type=int, default=100)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--only", action="append", choices=list(CASES))
    ap.add_argument("--out")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="camwire-bench-vent-") as tmp:
        for r in range(args.rounds):
            for name in args.only or list(CASES):
                row = {"round": r + 1, **run_case(name, args.cameras, args.workers, args.seconds, Path(tmp))}
                rows.append(row)
                print(json.dumps(row), flush=True)
    best = {name: max((r for r in rows if r["case"] == name), key=lambda r: r["frames_per_s"])
            for name in dict.fromkeys(r["case"] for r in rows)}
    print(f"\n{platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; best of {args.rounds}")
    print("| frame | bytes | frames/s | ventilator CPU | ms CPU per frame | frames per core-second |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in best.items():
        print(f"| {name} | {r['bytes']:,} | {r['frames_per_s']:,} | {r['ventilator_cpu_share']:.0%} | "
              f"{r['ventilator_cpu_ms_per_frame']} | {r['frames_per_core_second']:,} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"rounds": rows, "best": best, "cores": os.cpu_count(),
                                              "cameras": args.cameras, "workers": args.workers}, indent=1))


if __name__ == "__main__":
    main()
