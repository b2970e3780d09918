"""The classifier pool: how it scales, how it copes with a distant worker, how fairly it shares
itself among cameras under overload. Each measurement is made side by side in one run, the cases
alternating, with real daemons (``python -m camwire ...``) started by this script on ipc:// addresses
in a temporary folder (TCP only where a link must be TCP), and every result timed as the sink
publishes it (``--publish-detections``, a SUB here that stamps each result on arrival).

1. ``workers``: one worker against two on this host. ``../shared/media/people-walking.mp4``
   (795 frames, 768x576) read by an extractor as fast as the pool takes it (a file, not
   realtime, ``--detect always``, every frame), ventilator, workers, sink: one worker and two,
   each with ``--threads 1`` (the pool's own scaling: what a second worker adds), and one worker
   with every core (what ``camwire run --workers 1`` gives it) beside them. Wall time from the extractor's start to the last result,
   and frames/s from the first result to the last; rounds 1, 2, 1, 2 ...; ratio two / one, per
   detector: ``hog``, the COCO SSD (``onnx:../shared/models/coco-ssd-mobilenetv2.onnx``) and
   ``onnx:../shared/models/yolox-nano-416.onnx`` when the current ONNX detector finds people with
   it (probed first on a few frames: a case whose file is absent or that does not work is skipped,
   and the output says why). Beside it, the detector alone: one process, then two at once, each
   on one thread over frames decoded beforehand, nothing sent: the most a second worker could add
   on this host if the pipeline (decoding, routing, tracking) took no CPU. Each daemon's CPU per
   frame (/proc) is printed with each run.
2. ``distant``: one worker connected to the ventilator's backend over TCP directly, against the
   same worker connected through ``bench/relay.py``, a delay line adding 50 ms each way (100 ms
   round trip) on that link only (results still go to the sink on ipc: pushed, they wait for no
   answer). The extractor reads the clip (repeated back to back, no re-encoding) as fast as the
   pool takes it with ``--shm off`` (when the extractor has that flag), so frames cross the link
   as bytes as they would between hosts, in both cases. The worker's results per second over ``--distant-seconds`` after ``--warm`` seconds
   from its first result; local, delayed, local, delayed ...; ratio delayed / local. The
   ventilator's backend port comes from a bound-and-held socket: this script binds
   127.0.0.1:0 with SO_REUSEADDR and keeps it bound (not listening) while the ventilator binds
   the same port (ZeroMQ's listener sets SO_REUSEADDR too, which Linux allows beside a socket that
   is not listening); no other program can take it meanwhile, and no port number is guessed.
3. ``fair``: four identical live cameras (the clip repeated to outlast the run, ``realtime``, so
   paced as cameras are, ``detect = "always"``) in one extractor, one ``hog`` worker, with each
   camera's ``fps`` chosen so the cameras offer about twice what the worker does (its rate is
   measured first, ``--calibrate-seconds`` on the clip read as fast as it takes it). For
   ``--minutes``: results per camera (as the sink published them, over the run's window from the
   first result), their largest distance from the mean in %, p99 capture -> result latency (the
   sink's publish time here minus the frame's capture time) over the first and the last minute
   (the first and last third when the run is shorter than 3 minutes), and each daemon's resident
   memory (VmRSS, from /proc) sampled every 10 s: at the end of that first window (start-up
   over), at the end, and the peak; the whole series is in the JSON. The ventilator's
   ``--stats`` (received, completed, superseded per camera) and the sink's (results) are kept too.

Beside each figure: each worker's own account from its ``--stats`` (ms per frame in the detector,
the share of the run it was busy in it: the rest it waited for frames or for a core; its credit
window and measured round trip), the relay's CPU share (a real link would not take it from this
host), and the load average, since the host may be shared.

Run: ``.venv/bin/python bench/pool.py [--only workers|distant|fair] [--rounds N] [--minutes M]
[--out FILE]`` (about 5 + 4 + 11 minutes on a 2-core machine); a quick smoke run of everything:
``--frames 100 --rounds 1 --distant-seconds 6 --minutes 0.5 --calibrate-seconds 6`` (3 minutes).
``--only`` may be repeated; ``--keep DIR`` keeps the daemons' logs and stats files. Prints a table
per part and writes every figure as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camwire.common import wire  # noqa: E402

SHARED = ROOT.parent / "shared"
CLIP = SHARED / "media" / "people-walking.mp4"
SSD = SHARED / "models" / "coco-ssd-mobilenetv2.onnx"
YOLOX = SHARED / "models" / "yolox-nano-416.onnx"
RELAY = ROOT / "bench" / "relay.py"
CORES = os.cpu_count() or 1
PARTS = ("workers", "distant", "fair")
STOP_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 60.0  # no result this long while results are expected: the run is broken


# -- clips ----------------------------------------------------------------------------------------

def remux(src: Path, dst: Path, copies: int = 1, max_frames: int | None = None) -> int:
    """``src``'s video packets into ``dst`` without re-encoding: ``copies`` times back to back
    (timestamps shifted by the clip's span each time), or only its first ``max_frames`` frames,
    cut at the next key frame. Returns the frames written."""
    with av.open(str(src)) as inp:
        ist = inp.streams.video[0]
        packets = [(p.pts, p.dts, p.duration, p.is_keyframe, bytes(p)) for p in inp.demux(ist) if p.dts is not None]
        if max_frames is not None and max_frames < len(packets):
            cut = next((i for i in range(max_frames, len(packets)) if packets[i][3]), len(packets))
            packets = packets[:cut]
        start = min(p[0] for p in packets)
        span = max(p[0] + p[2] for p in packets) - start
        with av.open(str(dst), "w") as out:
            ost = out.add_stream_from_template(ist)
            for k in range(copies):
                for pts, dts, duration, key, data in packets:
                    packet = av.Packet(data)
                    packet.pts, packet.dts, packet.duration = pts + k * span, dts + k * span, duration
                    packet.is_keyframe = key
                    packet.stream = ost
                    out.mux(packet)
    return len(packets) * copies


def clip_fps(path: Path) -> float:
    with av.open(str(path)) as c:
        return float(c.streams.video[0].average_rate)


# -- processes --------------------------------------------------------------------------------------

class Procs:
    """Every process this bench starts: logs in ``work``, stopped by :meth:`stop_all` (SIGTERM,
    then SIGKILL after STOP_TIMEOUT_S), in the reverse of their start."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
        self.serial = 0

    def start(self, name: str, args: list[str], stdout=None) -> subprocess.Popen:
        self.serial += 1
        log = self.work / f"{self.serial:03d}-{name}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=stdout or f, stderr=f,
                                    stdin=subprocess.DEVNULL)
        proc.log = log  # type: ignore[attr-defined]
        self.procs.append((name, proc))
        return proc

    def camwire(self, name: str, daemon: str, *args: str) -> subprocess.Popen:
        return self.start(name, [sys.executable, "-m", "camwire", daemon, *args])

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            try:
                self.stop(proc)
            except Exception:  # noqa: BLE001 - keep stopping the others
                proc.kill()
        self.procs.clear()

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None and name != "extractor":
                tail = Path(proc.log).read_text(errors="replace")[-2000:]  # type: ignore[attr-defined]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a running process has used (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def wait_for_log(proc: subprocess.Popen, text: str, count: int, timeout: float, procs: Procs) -> None:
    """Until ``text`` appears ``count`` times in the process's log (e.g. the ventilator's
    ``worker joined``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(proc.log).read_text(errors="replace").count(text) >= count:  # type: ignore[attr-defined]
            return
        procs.check_alive()
        time.sleep(0.1)
    log = proc.log  # type: ignore[attr-defined]
    raise RuntimeError(f"{text!r} not seen {count} times in {timeout:.0f} s: see {log}")


class HeldPort:
    """A TCP port on 127.0.0.1 the kernel picked (bind to 0), kept bound with SO_REUSEADDR and not
    listening while a daemon binds the same port: nobody else can take it in between."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


# -- results, as the sink publishes them ------------------------------------------------------------

class Tap:
    """A SUB on the sink's ``--publish-detections``: every result with its arrival time
    (monotonic, and wall clock for latency against the frame's capture time)."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.results: list[tuple[float, int, str, int, int, str]] = []  # (mono, wall_ns, camera, seq, ts_ns, worker)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.connected = threading.Event()  # the handshake with the sink's PUB is done
        self.thread = threading.Thread(target=self._run, name="tap", daemon=True)
        self.thread.start()
        self.ready.wait(5)

    def _run(self) -> None:
        ctx = zmq.Context.instance()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        sub.connect(self.addr)
        self.ready.set()
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while not self.stopping.is_set():
                events = dict(poller.poll(100))
                if monitor in events:
                    monitor.recv_multipart()
                    self.connected.set()
                if sub not in events:
                    continue
                while True:
                    try:
                        parts = sub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    mono, wall = time.monotonic(), time.time_ns()
                    try:
                        r = wire.unpack(parts[0])
                    except wire.MalformedMessage:
                        continue
                    if isinstance(r, wire.Result):
                        with self.lock:
                            self.results.append((mono, wall, r.camera, r.seq, r.ts_ns, r.worker or ""))
        finally:
            sub.disable_monitor()
            monitor.close()
            sub.close()

    def snapshot(self) -> list[tuple[float, int, str, int, int, str]]:
        with self.lock:
            return list(self.results)

    def count(self) -> int:
        with self.lock:
            return len(self.results)

    def first_time(self) -> float | None:
        with self.lock:
            return self.results[0][0] if self.results else None

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


class Pipeline:
    """Sink, ventilator and the bench's tap, started in ``work/<tag>``; workers and extractors are
    added by the parts. ``backend``: the ventilator's backend (ipc unless given)."""

    def __init__(self, procs: Procs, work: Path, tag: str, backend: str | None = None) -> None:
        self.procs = procs
        self.dir = work / tag
        self.dir.mkdir(parents=True, exist_ok=True)
        d = self.dir
        self.sink_addr, self.front = f"ipc://{d}/sink", f"ipc://{d}/front"
        self.backend = backend or f"ipc://{d}/back"
        boxes = f"ipc://{d}/boxes"
        self.sink = procs.camwire("sink", "sink", "--bind", self.sink_addr, "--events", str(d / "events.jsonl"),
                                  "--publish-detections", boxes, "--stats", str(d / "sink-stats.json"))
        self.vent = procs.camwire("ventilator", "ventilator", "--frontend", self.front, "--backend", self.backend,
                                  "--stats", str(d / "ventilator-stats.json"))
        self.tap = Tap(boxes)
        self.workers: list[subprocess.Popen] = []
        self.extractor: subprocess.Popen | None = None

    def worker(self, name: str, detector: str, threads: int, connect: str | None = None) -> subprocess.Popen:
        proc = self.procs.camwire(name, "classifier", "--connect", connect or self.backend, "--sink", self.sink_addr,
                                  "--name", name, "--detector", detector, "--threads", str(threads),
                                  "--stats", str(self.dir / f"{name}-stats.json"))
        self.workers.append(proc)
        return proc

    def joined(self, n: int, timeout: float = 60.0) -> None:
        """Until ``n`` workers have joined the ventilator and the tap is connected to the sink (so
        it misses no result: a SUB gets only what is published after its subscription arrives)."""
        wait_for_log(self.vent, "worker joined", n, timeout, self.procs)
        if not self.tap.connected.wait(timeout):
            raise RuntimeError("the tap never connected to the sink's --publish-detections")
        time.sleep(0.2)  # the subscription itself follows the handshake

    def extract(self, *args: str) -> subprocess.Popen:
        self.extractor = self.procs.camwire("extractor", "extractor", "--push", self.front,
                                            "--stats", str(self.dir / "extractor-stats.json"), *args)
        return self.extractor

    def wait_results(self, n: int, timeout: float) -> bool:
        """Until ``n`` results are in; False if none came for IDLE_TIMEOUT_S or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        last, last_at = -1, time.monotonic()
        while time.monotonic() < deadline:
            got = self.tap.count()
            if got >= n:
                return True
            if got != last:
                last, last_at = got, time.monotonic()
            elif time.monotonic() - last_at > IDLE_TIMEOUT_S:
                return False
            self.procs.check_alive()
            time.sleep(0.05)
        return False

    def named(self) -> list[tuple[str, subprocess.Popen]]:
        named = [("sink", self.sink), ("ventilator", self.vent), *[(f"worker{i + 1}", w) for i, w in
                                                                  enumerate(self.workers)]]
        if self.extractor is not None:
            named.append(("extractor", self.extractor))
        return named

    def rss(self) -> dict[str, float | None]:
        return {name: rss_mb(p.pid) for name, p in self.named()}

    def cpu(self) -> dict[str, float | None]:
        """CPU seconds each daemon has used so far (the extractor's from its start)."""
        return {name: cpu_seconds(p.pid) for name, p in self.named()}

    def stop(self) -> None:
        self.tap.close()
        self.procs.stop_all()

    def stats(self, name: str) -> dict:
        path = self.dir / f"{name}-stats.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}


def worker_window_stats(stats: dict) -> dict:
    """What a worker's ``--stats`` says of its credit window and round trip, if anything (the keys
    that name them, one level down at most)."""
    out = {}
    for key, value in stats.items():
        if any(w in key.lower() for w in ("window", "rtt", "round")):
            out[key] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                if any(w in str(k).lower() for w in ("window", "rtt", "round")):
                    out[f"{key}.{k}"] = v
    return out


# -- detectors ---------------------------------------------------------------------------------

def probe_detector(spec: str) -> str | None:
    """None when ``spec`` finds a person in the first frames of the clip, else why not (a missing
    file, a model the current ONNX detector cannot read or decode). Run in a child process, so
    nothing of ONNX Runtime stays in this one."""
    code = f"""
import sys, av
sys.path.insert(0, {str(ROOT)!r})
from camwire.classifier.detectors import make_detector
from camwire.common import wire
det = make_detector({spec!r}, {{"threads": 1}})
with av.open({str(CLIP)!r}) as c:
    frames = [f.to_ndarray(format="bgr24") for _, f in zip(range(40), c.decode(video=0))][::8]
h = wire.FrameHeader(camera="probe", seq=0, ts_ns=1, width=frames[0].shape[1], height=frames[0].shape[0])
found = [d.label for r in det.detect([(h, f) for f in frames]) for d in r.detections]
print("LAYOUT", getattr(det, "layout", "?"), "CLASSES", len(getattr(det, "labels", None) or []),
      "FOUND", found.count("person"), len(found))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        return f"the detector failed to load or run: {last}"
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("LAYOUT")), "")
    words = line.split()
    if len(words) < 7 or int(words[5]) == 0:
        return (f"it loads (layout {words[1] if len(words) > 1 else '?'}, {words[3] if len(words) > 3 else '?'} class "
                f"names) but finds no person in 5 frames of people-walking.mp4 "
                f"({words[6] if len(words) > 6 else '?'} detections in all): the current ONNX detector does not "
                "decode this model's output")
    return None


def detectors(only_hog: bool = False) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """[(label, spec)] to run and {label: why skipped}."""
    run, skipped = [("hog", "hog")], {}
    if only_hog:
        return run, skipped
    for label, path in (("ssd", SSD), ("yolox-nano-416", YOLOX)):
        if not path.is_file():
            skipped[label] = f"{path} is absent"
            continue
        why = probe_detector(f"onnx:{path}")
        if why:
            skipped[label] = why
        else:
            run.append((label, f"onnx:{path}"))
    return run, skipped


# -- 1. one worker against two ------------------------------------------------------------------

def pool_run(procs: Procs, work: Path, tag: str, clip: Path, frames: int, spec: str, n_workers: int,
             threads: int, extract_args: tuple[str, ...] = ()) -> dict:
    pipe = Pipeline(procs, work, tag)
    try:
        for i in range(n_workers):
            pipe.worker(f"w{i + 1}", spec, threads)
        pipe.joined(n_workers)
        cpu_before = pipe.cpu()
        started = time.monotonic()
        pipe.extract("--camera", "walk", "--source", str(clip), "--detect", "always", *extract_args)
        complete = pipe.wait_results(frames, timeout=3600)
        cpu_after = pipe.cpu()
        res = pipe.tap.snapshot()
        if not res:
            raise RuntimeError(f"{tag}: no result came")
        first, last = res[0][0], res[-1][0]
        per_worker: dict[str, int] = {}
        for r in res:
            per_worker[r[5]] = per_worker.get(r[5], 0) + 1
    finally:
        pipe.stop()
    # each worker's own account (its --stats): ms per frame in the detector, and its busy seconds
    own = {w: {k: pipe.stats(w).get(k) for k in ("frame_ms", "busy_seconds", "window", "round_trip_ms")}
           for w in sorted(per_worker)}
    # CPU ms a frame of each daemon over the run (the extractor's includes its start-up)
    cpu_ms = {name: round(1000 * (after - (cpu_before.get(name) or 0.0)) / max(len(res), 1), 2)
              for name, after in cpu_after.items() if after is not None}
    return {"workers": n_workers, "threads_each": threads, "load1_after": round(os.getloadavg()[0], 2),
            "results": len(res), "expected": frames, "cpu_ms_per_frame": cpu_ms,
            "complete": complete, "wall_s": round(last - started, 2),
            "fps_first_to_last": round((len(res) - 1) / max(last - first, 1e-9), 2),
            "per_worker": per_worker, "worker_stats": own,
            # the share of the first-to-last span each worker spent in its detector, on average
            "worker_busy_share": round(sum((v["busy_seconds"] or 0) for v in own.values()) / len(own)
                                       / max(last - first, 1e-9), 2) if own else None}


ONLY_DETECTORS: list[str] = []  # --only-detectors
ALONE_S = 10.0  # the detector alone: how long each process runs it after a warm pass


def detector_loop(spec: str, seconds: float) -> None:
    """(A child of :func:`detector_alone`) the detector on one thread over 60 decoded frames of the
    clip held in memory, round and round for ``seconds`` after one warm pass; prints frames/s."""
    from camwire.classifier.detectors import make_detector
    from camwire.classifier.threads import limit_threads

    limit_threads(1)
    with av.open(str(CLIP)) as container:
        frames = [(None, f.to_ndarray(format="bgr24")) for _, f in zip(range(60), container.decode(video=0))]
    detector = make_detector(spec, {"threads": 1})
    for frame in frames:
        detector.detect([frame])
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        detector.detect([frames[n % len(frames)]])
        n += 1
    print(json.dumps({"fps": n / (time.monotonic() - t0)}), flush=True)


def detector_alone(spec: str, n: int, seconds: float = ALONE_S) -> float:
    """Frames/s of ``n`` processes each running the detector alone (no pipeline: frames already
    decoded, nothing sent), summed: what ``n`` workers could do if nothing else needed the cores."""
    procs = [subprocess.Popen([sys.executable, __file__, "--detector-loop", spec, str(seconds)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(n)]
    rates = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 300)
        rates.append(json.loads(out.strip().splitlines()[-1])["fps"])
    return round(sum(rates), 2)


def part_workers(procs: Procs, work: Path, clip: Path, frames: int, rounds: int,
                 extract_args: tuple[str, ...] = ()) -> dict:
    dets, skipped = detectors()
    if ONLY_DETECTORS:
        dets = [(label, spec) for label, spec in dets if label in ONLY_DETECTORS]
    out: dict = {"clip": f"{CLIP.name}, {frames} frames{', ' + ' '.join(extract_args) if extract_args else ''}", "cores": CORES, "skipped": skipped, "detectors": {}}
    for label, why in skipped.items():
        print(f"workers: {label} skipped: {why}", flush=True)
    # (workers, threads each): the pool's scaling with each worker's threads fixed (1 and 2 at one
    # thread each), and what `camwire run --workers 1` gives (one worker, every core) beside it
    cases = {"one": (1, 1), "two": (2, 1), "one, all cores": (1, CORES)}
    for label, spec in dets:
        runs: dict[str, list[dict]] = {case: [] for case in cases}
        for r in range(rounds):
            for case, (n, threads) in cases.items():
                got = pool_run(procs, work, f"workers-{label}-{n}x{threads}-{r}", clip, frames, spec, n, threads,
                               extract_args)
                runs[case].append(got)
                print(f"workers {label:15} round {r + 1} {case:15}: {got['wall_s']:7.2f} s wall, "
                      f"{got['fps_first_to_last']:6.2f} frames/s, {got['results']}/{frames} results "
                      f"{got['per_worker']}, ms/frame in each worker "
                      f"{ {w: v['frame_ms'] for w, v in got['worker_stats'].items()} }, "
                      f"busy {got['worker_busy_share']:.0%}; load {got['load1_after']}; "
                      f"CPU ms a frame {got['cpu_ms_per_frame']}", flush=True)
        best = {case: min(runs[case], key=lambda g: g["wall_s"]) for case in runs}
        fps = {case: max(g["fps_first_to_last"] for g in runs[case]) for case in runs}
        # the detector alone, one process and two at once: the most two workers could gain here
        alone = {"one": detector_alone(spec, 1), "two": detector_alone(spec, 2)}
        print(f"workers {label:15} the detector alone: one process {alone['one']} frames/s, two at once "
              f"{alone['two']} ({alone['two'] / alone['one']:.2f}x)", flush=True)
        row = {"runs": runs, "alone_fps": alone, "alone two/one": round(alone["two"] / alone["one"], 2),
               "best_wall_s": {case: best[case]["wall_s"] for case in runs},
               "best_fps": fps,
               "two/one wall": round(best["one"]["wall_s"] / best["two"]["wall_s"], 2),
               "two/one fps": round(fps["two"] / fps["one"], 2),
               "two/one per round": [round(a["wall_s"] / b["wall_s"], 2) for a, b in zip(runs["one"], runs["two"])],
               "two/one-all-cores wall": round(best["one, all cores"]["wall_s"] / best["two"]["wall_s"], 2)}
        out["detectors"][label] = row
    return out


# -- 2. a distant worker ------------------------------------------------------------------------

def start_relay(procs: Procs, target_port: int, delay: float) -> tuple[subprocess.Popen, int]:
    proc = procs.start("relay", [sys.executable, str(RELAY), "--target", f"127.0.0.1:{target_port}",
                                 "--delay", f"{delay * 1e3:g}ms"], stdout=subprocess.PIPE)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        log = Path(proc.log).read_text()[-1000:]  # type: ignore[attr-defined]
        raise RuntimeError(f"the relay did not start: {log}")
    return proc, json.loads(line)["port"]


def distant_run(procs: Procs, work: Path, tag: str, clip: Path, spec: str, delay: float | None, warm: float,
                seconds: float, shm_off: bool) -> dict:
    held = HeldPort()
    try:
        pipe = Pipeline(procs, work, tag, backend=f"tcp://127.0.0.1:{held.port}")
        try:
            connect, relay_port, relay = pipe.backend, None, None
            if delay is not None:
                relay, relay_port = start_relay(procs, held.port, delay)
                connect = f"tcp://127.0.0.1:{relay_port}"
            pipe.worker("w1", spec, CORES, connect=connect)
            pipe.joined(1)
            pipe.extract("--camera", "walk", "--source", str(clip), "--detect", "always",
                         *(["--shm", "off"] if shm_off else []))
            if not pipe.wait_results(1, timeout=120):
                raise RuntimeError(f"{tag}: no result came")
            first = pipe.tap.first_time()
            t0, t1 = first + warm, first + warm + seconds
            while time.monotonic() < t1 + 0.2:
                pipe.procs.check_alive()
                time.sleep(0.2)
            res = pipe.tap.snapshot()
            n = sum(1 for r in res if t0 <= r[0] < t1)
            relay_cpu = cpu_seconds(relay.pid) if relay is not None else None
            relay_span = time.monotonic() - first
        finally:
            pipe.stop()
        own = pipe.stats("w1")
        return {"delay_ms_each_way": None if delay is None else delay * 1e3, "backend_port": held.port,
                "relay_port": relay_port, "fps": round(n / seconds, 2), "load1_after": round(os.getloadavg()[0], 2),
                "results_in_window": n,
                "results_all": len(res), "worker_window": worker_window_stats(pipe.stats("w1")),
                "worker_frame_ms": own.get("frame_ms"),  # its recent ms per frame in the detector (a moving mean)
                # the share of the time from its first result to the stop it spent in its detector: the
                # rest it waited for frames (or for the CPU)
                "worker_busy_share": round((own.get("busy_seconds") or 0) / (res[-1][0] - res[0][0]), 2)
                if len(res) > 1 else None,
                # the relay's own CPU (user + system) over its life, per second from the first result: what a
                # real link would not take from this host's cores
                "relay_cpu_share": round(relay_cpu / relay_span, 2) if relay_cpu is not None else None}
    finally:
        held.close()


def part_distant(procs: Procs, work: Path, clip: Path, rounds: int, warm: float, seconds: float, delay: float,
                 which: list[str]) -> dict:
    check = subprocess.run([sys.executable, str(RELAY), "--check", "--delay", f"{delay * 1e3:g}ms"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    relay_check = json.loads(check.stdout) if check.returncode == 0 else {"error": check.stderr[-500:]}
    print(f"distant: relay check (itself, against an echo server): {relay_check}", flush=True)
    help_text = subprocess.run([sys.executable, "-m", "camwire", "extractor", "--help"], cwd=ROOT,
                               capture_output=True, text=True).stdout
    shm_off = "--shm" in help_text
    dets, skipped = [], {}
    for label in which:
        if label == "hog":
            dets.append(("hog", "hog"))
        elif label == "ssd":
            if SSD.is_file():
                dets.append(("ssd", f"onnx:{SSD}"))
            else:
                skipped["ssd"] = f"{SSD} is absent"
    out: dict = {"relay_check": relay_check, "warm_s": warm, "window_s": seconds, "extractor_shm_off": shm_off,
                 "skipped": skipped, "detectors": {}}
    for label, why in skipped.items():
        print(f"distant: {label} skipped: {why}", flush=True)
    for label, spec in dets:
        runs: dict[str, list[dict]] = {"local": [], "delayed": []}
        for r in range(rounds):
            for side in ("local", "delayed"):
                got = distant_run(procs, work, f"distant-{label}-{side}-{r}", clip, spec,
                                  delay if side == "delayed" else None, warm, seconds, shm_off)
                runs[side].append(got)
                relay = f", relay port {got['relay_port']}" if got["relay_port"] else ""
                relay_cpu = "" if got["relay_cpu_share"] is None else f", relay CPU {got['relay_cpu_share']:.0%}"
                busy = "?" if got["worker_busy_share"] is None else f"{got['worker_busy_share']:.0%}"
                print(f"distant {label:4} round {r + 1} {side:7}: {got['fps']:6.2f} frames/s "
                      f"({got['results_in_window']} results in {seconds:g} s; backend port {got['backend_port']}"
                      f"{relay}; {got['worker_frame_ms']} ms/frame in the worker, busy {busy}{relay_cpu}; "
                      f"load {got['load1_after']})"
                      f"{' ' + json.dumps(got['worker_window']) if got['worker_window'] else ''}", flush=True)
        best = {side: max(g["fps"] for g in runs[side]) for side in runs}
        out["detectors"][label] = {
            "runs": runs, "best_fps": best,
            "delayed/local": round(best["delayed"] / best["local"], 3) if best["local"] else None,
            "delayed/local per round": [round(b["fps"] / a["fps"], 3) if a["fps"] else None
                                        for a, b in zip(runs["local"], runs["delayed"])]}
    return out


# -- 3. fairness under overload ---------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def calibrate(procs: Procs, work: Path, clip: Path, seconds: float) -> float:
    """Results per second of one ``hog`` worker, the clip read as fast as it takes it."""
    pipe = Pipeline(procs, work, "fair-calibrate")
    try:
        pipe.worker("w1", "hog", CORES)
        pipe.joined(1)
        pipe.extract("--camera", "calib", "--source", str(clip), "--detect", "always")
        if not pipe.wait_results(1, timeout=120):
            raise RuntimeError("calibration: no result came")
        t0 = pipe.tap.first_time() + 2.0
        while time.monotonic() < t0 + seconds + 0.2:
            pipe.procs.check_alive()
            time.sleep(0.2)
        n = sum(1 for r in pipe.tap.snapshot() if t0 <= r[0] < t0 + seconds)
    finally:
        pipe.stop()
    return n / seconds


def part_fair(procs: Procs, work: Path, long_clip: Path, cal_clip: Path, minutes: float, calibrate_s: float,
              overload: float = 2.0, cameras: int = 4) -> dict:
    rate = calibrate(procs, work, cal_clip, calibrate_s)
    source_fps = clip_fps(long_clip)
    per_camera = min(source_fps, round(overload * rate / cameras, 2))
    print(f"fair: one hog worker does {rate:.2f} frames/s; {cameras} cameras at {per_camera} fps each offer "
          f"{per_camera * cameras:.1f} ({per_camera * cameras / rate:.2f}x)", flush=True)
    names = [f"cam{i}" for i in range(cameras)]
    pipe = Pipeline(procs, work, "fair")
    config = pipe.dir / "cameras.toml"
    config.write_text("".join(f'[cameras.{c}]\nurl = "{long_clip}"\nrealtime = true\ndetect = "always"\n'
                              f"fps = {per_camera}\n\n" for c in names))
    duration = minutes * 60
    rss_series: list[dict] = []
    try:
        pipe.worker("w1", "hog", CORES)
        pipe.joined(1)
        extract_started = time.monotonic()
        pipe.extract("--config", str(config))
        if not pipe.wait_results(1, timeout=120):
            raise RuntimeError("fair: no result came")
        t0 = pipe.tap.first_time()
        t_end = t0 + duration
        next_sample, next_print = t0, t0 + 60
        while (now := time.monotonic()) < t_end:
            pipe.procs.check_alive()
            if pipe.extractor is not None and pipe.extractor.poll() is not None:
                raise RuntimeError(f"the extractor exited with {pipe.extractor.returncode}")
            if now >= next_sample:
                rss_series.append({"t_s": round(now - t0, 1), **pipe.rss()})
                next_sample += 10.0
            if now >= next_print:
                counts = {c: 0 for c in names}
                for r in pipe.tap.snapshot():
                    if r[2] in counts:
                        counts[r[2]] += 1
                print(f"fair: {now - t0:5.0f} s, results so far {counts}", flush=True)
                next_print += 60
            time.sleep(min(0.5, max(0.0, t_end - now)))
        rss_series.append({"t_s": round(time.monotonic() - t0, 1), **pipe.rss()})
        res = [r for r in pipe.tap.snapshot() if t0 <= r[0] < t_end]
        extract_s = time.monotonic() - extract_started
    finally:
        pipe.stop()
    counts = {c: 0 for c in names}
    for r in res:
        if r[2] in counts:
            counts[r[2]] += 1
    mean = statistics.mean(counts.values())
    spread = max(abs(n - mean) for n in counts.values()) / mean * 100 if mean else None
    edge = 60.0 if duration >= 180 else duration / 3
    lat = lambda lo, hi: [(r[1] - r[4]) / 1e6 for r in res if lo <= r[0] - t0 < hi]  # noqa: E731
    first_lat, last_lat = lat(0, edge), lat(duration - edge, duration)
    minutes_rows = []
    for m in range(math.ceil(duration / 60)):
        row = {c: 0 for c in names}
        for r in res:
            if m * 60 <= r[0] - t0 < (m + 1) * 60 and r[2] in row:
                row[r[2]] += 1
        minutes_rows.append(row)
    vent, sink = pipe.stats("ventilator"), pipe.stats("sink")
    daemons = [k for k in rss_series[0] if k != "t_s"]
    # "start": the sample at the end of the first latency window (start-up over), "end": the last one
    start = min(rss_series, key=lambda s: abs(s["t_s"] - edge))
    rss = {d: {"at_first_result": rss_series[0][d], "start": start[d], "start_t_s": start["t_s"],
               "end": rss_series[-1][d], "end_t_s": rss_series[-1]["t_s"],
               "peak": max((s[d] for s in rss_series if s[d] is not None), default=None)} for d in daemons}
    received = sum((vent.get("received") or {}).values())
    return {
        "worker_rate_fps": round(rate, 2), "source_fps": source_fps, "fps_per_camera": per_camera,
        "offered_fps": round(per_camera * cameras, 2), "overload": round(per_camera * cameras / rate, 2),
        "offered_measured_fps": round(received / extract_s, 2) if received else None,
        "duration_s": duration, "results": counts, "results_per_s": round(len(res) / duration, 2),
        "mean": round(mean, 1), "max_spread_pct": round(spread, 2) if spread is not None else None,
        "latency_window_s": edge,
        "p99_latency_ms": {"first": percentile(first_lat, 99), "last": percentile(last_lat, 99)},
        "p50_latency_ms": {"first": percentile(first_lat, 50), "last": percentile(last_lat, 50)},
        "per_minute": minutes_rows, "rss_mb": rss, "rss_series": rss_series,
        "ventilator_stats": {k: vent.get(k) for k in ("received", "dispatched", "completed", "dropped") if k in vent},
        "sink_results": sink.get("results"),
    }


# -- output ----------------------------------------------------------------------------------------

def print_tables(results: dict) -> None:
    print()
    if w := results.get("workers"):
        print(f"1. one worker against two ({w['clip']}, {w['cores']} cores)")
        print(f"   {'detector':16} {'1x1t wall s':>11} {'2x1t wall s':>11} {'two/one':>8}   {'1x1t fps':>8} "
              f"{'2x1t fps':>8} {'two/one':>8}   {'1 all cores':>11} {'two/it':>7}   {'alone two/one':>13}")
        for label, row in w["detectors"].items():
            wall, fps = row["best_wall_s"], row["best_fps"]
            print(f"   {label:16} {wall['one']:11.2f} {wall['two']:11.2f} {row['two/one wall']:7.2f}x"
                  f"   {fps['one']:8.2f} {fps['two']:8.2f} {row['two/one fps']:7.2f}x"
                  f"   {wall['one, all cores']:11.2f} {row['two/one-all-cores wall']:6.2f}x"
                  f"   {row['alone two/one']:12.2f}x")
        for label, why in w["skipped"].items():
            print(f"   {label:16} skipped: {why}")
    if d := results.get("distant"):
        print(f"2. a distant worker (+{d['relay_check'].get('delay_ms_each_way', '?')} ms each way; relay's own round "
              f"trip {d['relay_check'].get('rtt_ms_median', '?')} ms)")
        print(f"   {'detector':8} {'local fps':>10} {'delayed fps':>12} {'delayed/local':>14}")
        for label, row in d["detectors"].items():
            ratio = row["delayed/local"]
            print(f"   {label:8} {row['best_fps']['local']:10.2f} {row['best_fps']['delayed']:12.2f} "
                  f"{'' if ratio is None else f'{ratio * 100:13.1f}%'}")
        for label, why in d["skipped"].items():
            print(f"   {label:8} skipped: {why}")
    if f := results.get("fair"):
        print(f"3. fairness: 4 cameras at {f['fps_per_camera']} fps ({f['offered_fps']} offered, {f['overload']}x one "
              f"hog worker's {f['worker_rate_fps']}), {f['duration_s'] / 60:g} min")
        print(f"   results {f['results']}, max spread from the mean {f['max_spread_pct']}%")
        print(f"   p99 capture -> result: first {f['latency_window_s']:g} s {f['p99_latency_ms']['first']} ms, last "
              f"{f['latency_window_s']:g} s {f['p99_latency_ms']['last']} ms")
        print(f"   done {f['results_per_s']} results/s of {f['offered_measured_fps']} frames/s received by the "
              f"ventilator; p50 first {f['p50_latency_ms']['first']} ms, last {f['p50_latency_ms']['last']} ms")
        for daemon, m in f["rss_mb"].items():
            print(f"   RSS {daemon:10} at {m['start_t_s']:g} s {m['start']} MB, at {m['end_t_s']:g} s {m['end']} MB, "
                  f"peak {m['peak']} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--only", choices=PARTS, action="append", help="run only this part (repeatable); default: all")
    ap.add_argument("--rounds", type=int, default=2, help="workers and distant: rounds of each case (default 2)")
    ap.add_argument("--minutes", type=float, default=10.0, help="fair: how long the four cameras run (default 10)")
    ap.add_argument("--frames", type=int, help="workers: only the clip's first N frames (cut at a key frame)")
    ap.add_argument("--detect-size", type=int, help="workers: the extractor resizes frames to this long side")
    ap.add_argument("--pixel-format", help="workers: the pixels the detectors get (bgr, rgb, gray, yuv420)")
    ap.add_argument("--only-detectors", nargs="+", help="workers: only these (hog, ssd, ...)")
    ap.add_argument("--distant-seconds", type=float, default=20.0, help="distant: measuring window (default 20)")
    ap.add_argument("--warm", type=float, default=3.0, help="distant: seconds after the first result not counted")
    ap.add_argument("--delay", type=float, default=50.0, help="distant: ms added each way (default 50)")
    ap.add_argument("--distant-detectors", nargs="+", choices=("hog", "ssd"), default=["hog", "ssd"])
    ap.add_argument("--calibrate-seconds", type=float, default=12.0, help="fair: the worker's rate measured this long")
    ap.add_argument("--overload", type=float, default=2.0, help="fair: what the cameras offer / the worker's rate")
    ap.add_argument("--out", help="write every figure as JSON here too")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (the daemons' logs and stats files)")
    ap.add_argument("--detector-loop", nargs=2, metavar=("SPEC", "SECONDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.detector_loop:
        detector_loop(args.detector_loop[0], float(args.detector_loop[1]))
        return
    ONLY_DETECTORS.extend(args.only_detectors or ())
    parts = args.only or PARTS
    if not CLIP.is_file():
        print(f"{CLIP} is absent: nothing to measure (every part reads it)", flush=True)
        results = {"skipped": f"{CLIP} is absent"}
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))
        return
    results: dict = {"date": dt.date.today().isoformat(),
                     "machine": f"{platform.machine()} {platform.processor() or ''}, {CORES} cores".strip(),
                     "load_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="camwire-pool-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        procs = Procs(work)
        try:
            if "workers" in parts:
                clip, frames = CLIP, 795
                if args.frames:
                    clip = work / "cut.mp4"
                    frames = remux(CLIP, clip, max_frames=args.frames)
                else:
                    with av.open(str(CLIP)) as c:
                        frames = sum(1 for p in c.demux(c.streams.video[0]) if p.dts is not None)
                extract_args = (("--detect-size", str(args.detect_size)) if args.detect_size else ()) + (
                    ("--pixel-format", args.pixel_format) if args.pixel_format else ())
                results["workers"] = part_workers(procs, work, clip, frames, args.rounds, extract_args)
            long_clip = None
            if "distant" in parts or "fair" in parts:
                span = 795 / 10
                # fair: the run and a margin, in real time; distant: a worker at up to 100 frames/s for
                # the warm-up, the window and a margin
                need = max(args.minutes * 60 + 60 if "fair" in parts else 0,
                           (args.warm + args.distant_seconds + 10) * 100 / 10 if "distant" in parts else 0)
                long_clip = work / "long.mp4"
                remux(CLIP, long_clip, copies=max(1, math.ceil(need / span)))
            if "distant" in parts:
                results["distant"] = part_distant(procs, work, long_clip, args.rounds, args.warm, args.distant_seconds,
                                                  args.delay / 1e3, args.distant_detectors)
            if "fair" in parts:
                results["fair"] = part_fair(procs, work, long_clip, CLIP, args.minutes, args.calibrate_seconds,
                                            args.overload)
        finally:
            procs.stop_all()
            results["load_at_end"] = os.getloadavg()
            print_tables(results)
            if args.out:
                Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
