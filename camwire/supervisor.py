"""``camwire run``: the whole pipeline on one host, each daemon a supervised child process.

Children talk over ipc sockets in a private run folder. A child that dies is restarted (with a
capped backoff) and the restart logged; an extractor of a file that reached its end exits 0 and
stays down. With ``--once`` the run ends when every file has been read and the sink has every
result; ``--stats`` then holds each component's counters, summed over restarts.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classifier.rules import load_rules
from classifier.worker import add_detector_arguments, detector_argv
from common.counters import merge, write_stats
from common.lifecycle import StopFlag
from common.logs import configure, redact_url
from extractor.camera import PASSTHROUGH
from extractor.daemon import add_sampling_arguments
from recorder.daemon import add_recording_arguments, recording_argv
from extractor.source import is_file

STOP_TIMEOUT_S = 10.0
RESTART_WINDOW_S = 60.0
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--camera", action="append", required=True, metavar="NAME=URL",
                   help="a camera; repeat for more; URL may be 'primary|fallback'")
    add_detector_arguments(p)
    p.add_argument("--workers", type=int, default=2, metavar="N", help="classifier processes")
    p.add_argument("--events", default="events.jsonl", metavar="PATH")
    p.add_argument("--data-dir", metavar="DIR", help="snapshots go here")
    add_sampling_arguments(p)
    p.add_argument("--once", action="store_true", help="exit 0 when every file source has been fully processed")
    p.add_argument("--stats", metavar="PATH", help="write every component's counters here at exit")
    p.add_argument("--cooldown", type=float, default=1.0, metavar="S", help="see camwire sink --cooldown")
    p.add_argument("--rules", metavar="FILE", help="see camwire sink --rules")
    rec = p.add_argument_group("recording (see camwire recorder)")
    rec.add_argument("--record", metavar="DIR", help="record every camera into a ring here and keep clips of events")
    rec.add_argument("--record-enc", default=PASSTHROUGH, choices=(PASSTHROUGH, "lz4"),
                     help="what the extractors publish to the recorder: the source's packets, or LZ4 frames to re-encode")
    add_recording_arguments(rec)


@dataclass
class Child:
    """One supervised process; ``argv`` is everything after ``camwire``."""

    name: str
    role: str
    argv: list[str]
    stats_dir: Path
    proc: subprocess.Popen | None = None
    starts: list[float] = field(default_factory=list)
    finished: bool = False  # ended on purpose (file read to its end, sink drained)
    restart_at: float | None = None

    def stats_path(self) -> Path:
        return self.stats_dir / f"{self.name}.{len(self.starts)}.json"

    def start(self) -> None:
        self.starts.append(time.monotonic())
        self.proc = subprocess.Popen([sys.executable, "-m", "camwire", *self.argv, "--stats", str(self.stats_path())],
                                     preexec_fn=_stop_with_parent)

    def recent_restarts(self, now: float) -> int:
        return sum(1 for t in self.starts[1:] if now - t < RESTART_WINDOW_S)


def _stop_with_parent() -> None:
    """In the child, before exec: get SIGTERM when ``camwire run`` dies, even by SIGKILL, so no
    daemon outlives its supervisor holding sockets and cameras (Linux's PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def parse_camera(text: str) -> tuple[str, list[str]]:
    name, sep, urls = text.partition("=")
    if not sep or not name or not urls:
        raise ValueError(f"--camera {redact_url(text)!r} is not NAME=URL")
    return name, [u for u in urls.split("|") if u]


def plan(args: argparse.Namespace, run_dir: Path) -> list[Child]:
    """The children of a run, in start order: sink, ventilator, workers, extractors."""
    cameras = [parse_camera(c) for c in args.camera]
    names = [n for n, _ in cameras]
    if len(set(names)) != len(names):
        raise ValueError("camera names must be unique")
    if args.rules:
        load_rules(args.rules)  # refuse a bad file here, not in a sink restarted over and over
    if args.once and not all(is_file(u) for _, urls in cameras for u in urls):
        raise ValueError("--once needs every source to be a file")
    addr = {k: f"ipc://{run_dir}/{k}" for k in ("frontend", "backend", "results", "events")}
    stats_dir = run_dir / "stats"
    sink = ["sink", "--bind", addr["results"], "--events", args.events, "--cooldown", str(args.cooldown)]
    if args.rules:
        sink += ["--rules", args.rules]
    if args.record:
        sink += ["--publish", addr["events"]]
    if args.data_dir:
        sink += ["--data-dir", args.data_dir]
    if args.once:
        sink += ["--exit-when-drained", ",".join(names)]
    children = [Child("sink", "sink", sink, stats_dir),
                Child("ventilator", "ventilator",
                      ["ventilator", "--frontend", addr["frontend"], "--backend", addr["backend"]], stats_dir)]
    for i in range(1, args.workers + 1):
        children.append(Child(f"classifier-{i}", "classifier",
                              ["classifier", "--connect", addr["backend"], "--sink", addr["results"],
                               "--name", f"worker-{i}", *detector_argv(args)], stats_dir))
    sampling = (["--keyframes"] if args.keyframes else ["--fps", str(args.fps)] if args.fps
                else ["--every", str(args.every)])
    publish = {name: f"ipc://{run_dir}/publish-{i}" for i, (name, _) in enumerate(cameras)}
    if args.record:
        argv = ["recorder", "--dir", args.record, "--events", addr["events"], *recording_argv(args)]
        argv += [a for name in names for a in ("--subscribe", publish[name])]
        if args.once:
            argv += ["--exit-when-ended", ",".join(names)]
        children.append(Child("recorder", "recorder", argv, stats_dir))
    for name, urls in cameras:
        argv = ["extractor", "--camera", name, "--push", addr["frontend"], *sampling]
        argv += [a for u in urls for a in ("--source", u)]
        if args.realtime:
            argv.append("--realtime")
        if args.record:
            # a file waits for the recorder, so it is recorded from its first frame
            argv += ["--publish", publish[name], "--publish-enc", args.record_enc, "--publish-wait", "10"]
        children.append(Child(f"extractor-{name}", "extractor", argv, stats_dir))
    return children


def main(args: argparse.Namespace) -> int:
    log = configure("run")
    run_dir = Path(tempfile.mkdtemp(prefix="camwire-run-"))
    try:
        children = plan(args, run_dir)
    except ValueError as exc:
        log.error("cannot start", error=str(exc))
        shutil.rmtree(run_dir, ignore_errors=True)
        return 2
    stop = StopFlag().install()
    started = time.monotonic()
    for child in children:
        child.start()
        log.info("started", child=child.name, pid=child.proc.pid)
    try:
        supervise(children, stop, args.once, log)
    finally:
        shutdown(children, log)
        stats = collect_stats(children)
        stats["run"] = {"wall_s": round(time.monotonic() - started, 3),
                        "restarts": {c.name: len(c.starts) - 1 for c in children if len(c.starts) > 1}}
        write_stats(args.stats, stats)
        print(summary(stats), flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def supervise(children: list[Child], stop: StopFlag, once: bool, log) -> None:
    # with --once, the run is over when these have exited 0 on their own
    last = [c for c in children if c.role in ("sink", "recorder")]
    while not stop.is_set():
        now = time.monotonic()
        for child in children:
            if child.finished:
                continue
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    child.start()
                    log.warning("restarted", child=child.name, pid=child.proc.pid, restarts=len(child.starts) - 1)
                continue
            rc = child.proc.poll()
            if rc is None:
                continue
            if rc == 0 and child.role == "extractor":
                child.finished = True
                log.info("source finished", child=child.name)
            elif rc == 0 and child in last and once:
                child.finished = True
            else:
                delay = min(30.0, 0.5 * 2 ** child.recent_restarts(now))
                child.restart_at = now + delay
                log.error("child died", child=child.name, returncode=rc, restart_in_s=delay)
        if once and all(c.finished for c in last):
            log.info("every source processed; stopping")
            return
        stop.wait(0.2)


def shutdown(children: list[Child], log) -> None:
    """Stop in pipeline order, so what is in flight can still be delivered downstream.

    Workers go before the ventilator: a leaving worker tells it so and finishes what it holds.
    """
    for role in ("extractor", "classifier", "ventilator", "recorder", "sink"):
        group = [c for c in children if c.role == role and c.proc is not None and c.proc.poll() is None]
        for child in group:
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in group:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("did not stop in time; killed", child=child.name, timeout_s=STOP_TIMEOUT_S)
                child.proc.kill()
                child.proc.wait()


def collect_stats(children: list[Child]) -> dict[str, Any]:
    """Every stats file each child wrote (one per start), summed per component."""
    out: dict[str, Any] = {"extractor": {}, "ventilator": {}, "workers": {}, "sink": {}, "recorder": {}}
    for child in children:
        for path in sorted(child.stats_dir.glob(f"{child.name}.*.json")):
            data = json.loads(path.read_text())
            if child.role == "extractor":
                merge(out["extractor"], data)
            elif child.role == "classifier":
                merge(out["workers"].setdefault(data.pop("name", child.name), {}), data)
            else:
                merge(out[child.role], data)
    return out


def summary(stats: dict[str, Any]) -> str:
    """A short human report of a run: per camera what was decoded, sent, dropped and processed."""
    lines = ["", "camwire run summary", f"{'camera':<16}{'decoded':>9}{'sent':>8}{'processed':>11}  dropped"]
    vent = stats.get("ventilator", {})
    for camera, c in sorted(stats.get("extractor", {}).items()):
        dropped = dict(c.get("dropped", {}))
        for reason, n in vent.get("dropped", {}).get(camera, {}).items():
            dropped[reason] = dropped.get(reason, 0) + n
        processed = stats.get("sink", {}).get("results", {}).get(camera, 0)
        lines.append(f"{camera:<16}{c.get('decoded', 0):>9}{c.get('sent', 0):>8}{processed:>11}  "
                     + (", ".join(f"{k}={v}" for k, v in sorted(dropped.items())) or "none"))
    workers = stats.get("workers", {})
    if workers:
        lines.append("workers: " + ", ".join(f"{w}={sum(v.get('processed', {}).values())}" for w, v in sorted(workers.items())))
    events = stats.get("sink", {}).get("events", {})
    lines.append("events: " + (", ".join(f"{k}={v}" for k, v in sorted(events.items())) or "none"))
    recorder = stats.get("recorder", {})
    if recorder.get("written"):
        lines.append(f"recorded: {sum(recorder['written'].values())} frames in {sum(recorder.get('segments', {}).values())}"
                     f" segments; gaps {sum(recorder.get('gaps', {}).values())}; events kept "
                     f"{sum(recorder.get('events_kept', {}).values())}")
    malformed = {k: stats[k].get("malformed") for k in ("ventilator", "sink", "recorder") if stats.get(k, {}).get("malformed")}
    if malformed:
        lines.append(f"malformed messages: {malformed}")
    return "\n".join(lines)
