"""Recording benchmarks, measured side by side in one run.

1. CPU seconds per minute of 1080p25 video recorded, for the two ways frames reach the recorder:
   ``passthrough`` (the extractor publishes the source's H.264 packets; the recorder remuxes
   them) and ``lz4`` (the extractor publishes LZ4-compressed BGR frames; the recorder decodes the
   LZ4 and encodes H.264 with libx264). A real extractor and a real recorder run as processes,
   the file paced in real time as a camera would be; each process's CPU time (user + system,
   from ``wait4``) is scaled to one minute of video. The extractor's push to the classifier
   path goes to a PULL here that discards: ``--keyframes`` with passthrough (nothing else is
   decoded), ``--every 50`` with LZ4 (the same frames sent, but every frame must be decoded to
   be published).
2. LZ4 on real frames: compression ratio and compress/decompress speed on every frame of the
   sample clips (the shared ones when present, and the generated 1080p clip).

Run: ``.venv/bin/python bench/recorder.py [--seconds S] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import lz4.block
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camwire.sample import make_sample_clip  # noqa: E402

SHARED_MEDIA = ROOT.parent / "shared" / "media"


def free_tcp() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def cpu_of(proc: subprocess.Popen) -> float:
    """Wait for a child and return the CPU seconds it used (user + system)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def drain(addr: str, stop: threading.Event) -> None:
    ctx = zmq.Context.instance()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(addr)
    while not stop.is_set():
        if pull.poll(100):
            pull.recv_multipart()
    pull.close()


def record_once(clip: Path, enc: str, work: Path, seconds: float) -> dict:
    push, publish = free_tcp(), free_tcp()
    stop = threading.Event()
    t = threading.Thread(target=drain, args=(push, stop), daemon=True)
    t.start()
    ring, stats = work / f"ring-{enc}", work / f"rec-{enc}.json"
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json"}
    cmd = [sys.executable, "-m", "camwire"]
    rec = subprocess.Popen([*cmd, "recorder", "--subscribe", publish, "--dir", str(ring), "--segment", "10",
                            "--exit-when-ended", "cam", "--stats", str(stats)],
                           cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    # passthrough needs no decoding for the recorder: the classifier path takes key frames only.
    # LZ4 frames must be decoded, every one, to be published.
    sampling = ["--keyframes"] if enc == "passthrough" else ["--every", "50"]
    ext = subprocess.Popen([*cmd, "extractor", "--camera", "cam", "--source", str(clip), "--push", push,
                            *sampling, "--realtime", "--publish", publish, "--publish-enc", enc,
                            "--publish-wait", "30"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    ext_cpu = cpu_of(ext)
    rec_cpu = cpu_of(rec)
    stop.set()
    t.join()
    s = json.loads(stats.read_text())
    size = sum(p.stat().st_size for p in ring.rglob("*.mkv"))
    per_min = 60.0 / seconds
    return {"mode": enc, "recorder_cpu_s_per_min": round(rec_cpu * per_min, 2),
            "extractor_cpu_s_per_min": round(ext_cpu * per_min, 2),
            "frames_written": s.get("written", {}).get("cam", 0), "gaps": s.get("gaps", {}).get("cam", 0),
            "mb_per_min": round(size * per_min / 1e6, 2)}


def lz4_on(clip: Path, max_frames: int = 300) -> dict:
    raw = comp = 0
    t_comp = t_dec = 0.0
    n = 0
    with av.open(str(clip)) as c:
        for frame in c.decode(video=0):
            img = frame.to_ndarray(format="bgr24")
            t0 = time.perf_counter()
            block = lz4.block.compress(img, store_size=False)
            t1 = time.perf_counter()
            lz4.block.decompress(block, uncompressed_size=img.nbytes)
            t2 = time.perf_counter()
            raw += img.nbytes
            comp += len(block)
            t_comp += t1 - t0
            t_dec += t2 - t1
            n += 1
            if n >= max_frames:
                break
        size = f"{frame.width}x{frame.height}"
    return {"clip": clip.name, "size": size, "frames": n, "ratio": round(raw / comp, 2),
            "compress_mb_s": round(raw / t_comp / 1e6), "decompress_mb_s": round(raw / t_dec / 1e6),
            "compress_fps": round(n / t_comp)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the 1080p25 test clip")
    ap.add_argument("--out", help="write the results as JSON here too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = work / "1080p.mp4"
        make_sample_clip(clip, seconds=args.seconds, fps=25, width=1920, height=1080, gop=50)
        results = {"machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
                   "seconds": args.seconds, "recording": [], "lz4": []}
        for enc in ("passthrough", "lz4"):
            r = record_once(clip, enc, work, args.seconds)
            results["recording"].append(r)
            print(json.dumps(r), flush=True)
        clips = [clip] + sorted(SHARED_MEDIA.glob("*.mp4")) if SHARED_MEDIA.exists() else [clip]
        for c in clips:
            r = lz4_on(c)
            results["lz4"].append(r)
            print(json.dumps(r), flush=True)
    p, l = results["recording"]
    if p["recorder_cpu_s_per_min"] > 0:
        print(f"recorder CPU, LZ4 re-encoded / passthrough: {l['recorder_cpu_s_per_min'] / p['recorder_cpu_s_per_min']:.1f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
