"""``camwire run``: the whole pipeline on one host, each daemon a supervised child process.

Two ways to say what runs: ``--config camwire.toml`` (the file's cameras and each daemon's
settings: MQTT, webhook, metrics ports, the recorder if its section names a ``dir``), or
``--camera NAME=URL`` flags. With a file every child gets ``--config FILE`` (so no secret is
ever on a child's command line) and only the overrides it needs: ipc addresses in a private run
folder for the sockets the file's ``[sockets]`` does not name, ``--instance N`` for worker N,
and the flags given to ``run`` itself, which still override the file. ``[run]`` holds run's own
flags (``workers = 4``).

Extractors: cameras with their own ``publish`` or ``metrics_port`` get an extractor each (as
``camwire-extractor@NAME`` would run them); the others share one (as ``camwire-extractor``).

SIGHUP is passed on to every running child, and each reloads (common.daemon); run goes on.
A child that exits 2 refused its options (or an address is in use): a restart would only say so
again, so the run stops with exit 2. Any other death (a crash is exit 1, with its traceback in the
log) is restarted with a capped backoff and the restart logged. An extractor that
exits 0 (its files all read to the end) or 3 (EXIT_SOURCE_FAILED: a file camera can never work)
has finished and stays down. With ``--once`` (every source a file) the run ends when every
camera has ended or failed and the sink has every result; it exits 1 if any camera failed, else
0. ``--stats`` then holds each component's counters, summed over restarts.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classifier import sink as sink_daemon
from classifier import worker as worker_daemon
from classifier.worker import add_detector_arguments, detector_argv
from common.config import SECURITY, Config
from common.counters import merge, write_stats
from common.lifecycle import Hangup, StopFlag, backoff_delay
from common.logs import configure, redact_url
from common.paths import camera_name
from common.sockets import OperatorError
from common.units import duration
from extractor.camera import PASSTHROUGH
from extractor.daemon import add_sampling_arguments
from extractor.source import is_file
from recorder.daemon import add_recording_arguments, recording_argv

STOP_TIMEOUT_S = 10.0
RESTART_WINDOW_S = 60.0
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
EXIT_SOURCE_FAILED = 3  # an extractor's: a file camera failed for good (extractor.daemon)
FINISHED = (0, EXIT_SOURCE_FAILED)  # an extractor that exits so is done: never restarted
SOCKET_NAMES = ("frontend", "backend", "results", "events", "detections")


def parse_camera(text: str) -> tuple[str, list[str]]:
    """argparse type of ``--camera NAME=URL[|FALLBACK...]``; the name as the wire allows it."""
    name, sep, urls = text.partition("=")
    if not sep or not name or not urls:
        raise argparse.ArgumentTypeError(f"{redact_url(text)!r} is not NAME=URL")
    return camera_name(name), [u for u in urls.split("|") if u]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--camera", action="append", type=parse_camera, metavar="NAME=URL",
                   help="a camera (without --config); repeat for more; URL may be 'primary|fallback'")
    add_detector_arguments(p)
    for action in p._actions:
        if action.dest == "detector":  # with --config, the file's [classifier] names it
            action.required = False
    p.add_argument("--workers", type=int, default=2, metavar="N", help="classifier processes")
    p.add_argument("--events", default="events.jsonl", metavar="PATH", help="see camwire sink --events")
    p.add_argument("--data-dir", metavar="DIR", help="snapshots and status.db go here")
    add_sampling_arguments(p)
    p.add_argument("--once", action="store_true",
                   help="every source a file: exit when each has been processed (1 if any camera failed)")
    p.add_argument("--stats", metavar="PATH", help="write every component's counters here at exit")
    p.add_argument("--cooldown", type=duration, default=1.0, metavar="S", help="see camwire sink --cooldown")
    p.add_argument("--rules", metavar="FILE", help="see camwire sink --rules")
    rec = p.add_argument_group("recording (see camwire recorder)")
    rec.add_argument("--record", metavar="DIR", help="record every camera into a ring here and keep clips of events")
    rec.add_argument("--record-enc", default=PASSTHROUGH, choices=(PASSTHROUGH, "lz4"),
                     help="what the extractors publish to the recorder: the source's packets, or LZ4 frames to re-encode")
    add_recording_arguments(rec)
    p.add_argument("--web", type=int, metavar="PORT",
                   help="also run the web console on http://127.0.0.1:PORT/ (with --config: when the file has a "
                        "[web] section, on its port)")


def check(args: argparse.Namespace) -> None:
    """run's flags judged before anything starts, by the hooks of the daemons they go to (the
    workers' detector flags, the sink's ``--rules``): a mistake is refused once here, never by a
    child restarted over and over. ValueError naming the flag."""
    if getattr(args, "workers", 1) < 1:
        raise ValueError(f"--workers must be at least 1, not {args.workers}")
    worker_daemon.check(args)
    sink_daemon.check(args)


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
    failed: bool = False  # an extractor that finished with EXIT_SOURCE_FAILED
    restart_at: float | None = None
    # what the child needs but its command line must not show (``ps`` shows every user the
    # command lines; /proc/PID/environ only the owner and root): camera URLs with passwords
    env: dict[str, str] = field(default_factory=dict)

    def stats_path(self) -> Path:
        return self.stats_dir / f"{self.name}.{len(self.starts)}.json"

    def start(self) -> None:
        self.starts.append(time.monotonic())
        mask = os.umask(0)  # read it back: run's own --umask, which every child keeps
        os.umask(mask)
        self.proc = subprocess.Popen([sys.executable, "-m", "camwire", *self.argv, "--stats", str(self.stats_path()),
                                      "--umask", f"{mask:04o}"], preexec_fn=_in_child,
                                     env={**os.environ, **self.env} if self.env else None)

    def recent_restarts(self, now: float) -> int:
        return sum(1 for t in self.starts[1:] if now - t < RESTART_WINDOW_S)


def _in_child() -> None:
    """In the child, before exec: SIGHUP ignored until the daemon's skeleton handles it (an
    ignored signal stays ignored across exec), so a reload passed on during its start-up cannot
    kill it; and SIGTERM when ``camwire run`` dies, even by SIGKILL, so no daemon outlives its
    supervisor holding sockets and cameras (Linux's PR_SET_PDEATHSIG)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def plan(args: argparse.Namespace, run_dir: Path) -> list[Child]:
    """The children of a run, in start order: sink, ventilator, workers, recorder, extractors."""
    if isinstance(getattr(args, "config", None), Config):
        if args.camera:
            raise ValueError("--camera and --config: the cameras come from one or the other")
        return plan_from_config(args, args.config, run_dir)
    if not args.camera:
        raise ValueError("give --config FILE or at least one --camera NAME=URL")
    if not args.detector:
        raise ValueError("--detector is needed without --config")
    return plan_from_flags(args, run_dir)


def plan_from_flags(args: argparse.Namespace, run_dir: Path) -> list[Child]:
    cameras = args.camera
    names = [n for n, _ in cameras]
    if len(set(names)) != len(names):
        raise ValueError("camera names must be unique")
    if args.once and not all(is_file(u) for _, urls in cameras for u in urls):
        raise ValueError("--once needs every source to be a file")
    addr = {k: f"ipc://{run_dir}/{k}" for k in SOCKET_NAMES}
    stats_dir = run_dir / "stats"
    sink = ["sink", "--bind", addr["results"], "--events", args.events, "--cooldown", str(args.cooldown)]
    if args.rules:
        sink += ["--rules", args.rules]
    if args.record:
        sink += ["--publish", addr["events"]]
    if args.web:
        sink += ["--publish-detections", addr["detections"]]
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
    publish = {name: f"ipc://{run_dir}/publish-{name}" for name in names}
    if args.record:
        argv = ["recorder", "--dir", args.record, "--events", addr["events"], *recording_argv(args)]
        argv += [a for name in names for a in ("--subscribe", publish[name])]
        if args.once:
            argv += ["--exit-when-ended", ",".join(names)]
        children.append(Child("recorder", "recorder", argv, stats_dir))
    for name, urls in cameras:
        argv = ["extractor", "--camera", name, "--push", addr["frontend"], *sampling]
        # each URL through the environment: the extractor fills ${VAR} in (common.env.expand)
        env = {f"CAMWIRE_SOURCE_{i}": u for i, u in enumerate(urls)}
        argv += [a for var in env for a in ("--source", f"${{{var}}}")]
        if args.realtime:
            argv.append("--realtime")
        if args.record:
            # a file waits for the recorder, so it is recorded from its first frame
            argv += ["--publish", publish[name], "--publish-enc", args.record_enc, "--publish-wait", "10"]
        elif args.web:
            argv += ["--publish", publish[name]]  # live views only: LZ4 frames, no waiting for a subscriber
        children.append(Child(f"extractor-{name}", "extractor", argv, stats_dir, env=env))
    if args.web:
        argv = ["web", "--port", str(args.web), "--events", args.events, "--detections", addr["detections"],
                *(["--data-dir", args.data_dir] if args.data_dir else []),
                *(["--recordings", args.record] if args.record else [])]
        argv += [a for name in names for a in ("--subscribe", publish[name])]
        children.append(Child("web", "web", argv, stats_dir))
    return children


def _given(pairs: list[str], given: set[str]) -> list[str]:
    """Of ``[--flag, value, ...]``, the pairs whose flag was given to ``run`` itself."""
    return [w for i in range(0, len(pairs), 2) if pairs[i][2:].replace("-", "_") in given
            for w in pairs[i:i + 2]]


def _flag_words(section: dict[str, Any], skip: set[str]) -> list[str]:
    """A file section's values as flags (for a child that cannot take --config): no secrets here."""
    words: list[str] = []
    for key, value in section.items():
        if key in skip:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif value is not False:
            words += [w for v in (value if isinstance(value, list) else [value]) for w in (flag, str(v))]
    return words


def plan_from_config(args: argparse.Namespace, cfg: Config, run_dir: Path) -> list[Child]:
    """A run of the whole file: every child reads it (--config) and gets only what it must."""
    given: set[str] = getattr(args, "given", set())
    if not cfg.cameras:
        raise ValueError(f"{cfg.path}: no [cameras.NAME] to run")
    names = list(cfg.cameras)
    if args.once and not all(is_file(u) for c in cfg.cameras.values() for u in c.sources):
        raise ValueError("--once needs every camera's sources to be files")
    cfg_argv = ["--config", str(cfg.path)]
    own = {k: f"ipc://{run_dir}/{k}" for k in SOCKET_NAMES if k not in cfg.sockets}  # the file names none

    def over(name: str, flag: str) -> list[str]:
        return [flag, own[name]] if name in own else []

    stats_dir = run_dir / "stats"
    record_dir = args.record if "record" in given else cfg.sections["recorder"].get("dir")
    sink = ["sink", *cfg_argv, *over("results", "--bind")]
    if "events" in given or "events" not in cfg.sections["sink"]:
        sink += ["--events", args.events]
    sink += _given(["--data-dir", str(args.data_dir), "--cooldown", str(args.cooldown),
                    "--rules", str(args.rules)], given)
    if record_dir:
        sink += over("events", "--publish")
    web = bool(cfg.sections.get("web")) or "web" in given
    if web:
        sink += over("detections", "--publish-detections")
    if args.once:
        sink += ["--exit-when-drained", ",".join(names)]
    children = [Child("sink", "sink", sink, stats_dir),
                Child("ventilator", "ventilator",
                      ["ventilator", *cfg_argv, *over("frontend", "--frontend"), *over("backend", "--backend")],
                      stats_dir)]
    for i in range(1, args.workers + 1):
        children.append(Child(f"classifier-{i}", "classifier",
                              ["classifier", *cfg_argv, "--instance", str(i), *over("backend", "--connect"),
                               *over("results", "--sink"), *_given(detector_argv(args), given)], stats_dir))
    # extractors: a camera with its own publish/metrics port alone, the others together; with
    # --once each alone, and given its camera as flags: an extractor with --config never exits on
    # its own (a service), and with --once every source is a file (no secret on a command line)
    alone = names if args.once else [c.name for c in cfg.cameras.values() if c.publish or c.metrics_port]
    shared = [n for n in names if n not in alone]
    groups = [(f"extractor-{n}", [n]) for n in alone] + ([("extractor", shared)] if shared else [])
    publish = {n: cfg.cameras[n].publish or f"ipc://{run_dir}/publish-{n}" for n in alone}
    for n in shared:
        publish[n] = cfg.sockets.get("frames") or f"ipc://{run_dir}/publish-shared"
    if record_dir:
        recorded = [n for n in names if cfg.cameras[n].record]
        argv = ["recorder", *cfg_argv, *over("events", "--events"), *over("results", "--sink"),
                *_given(recording_argv(args), given)]
        if "record" in given:
            argv += ["--dir", record_dir]
        argv += [a for addr in dict.fromkeys(publish[n] for n in recorded) for a in ("--subscribe", addr)]
        if args.once:
            argv += ["--exit-when-ended", ",".join(recorded)]
        children.append(Child("recorder", "recorder", argv, stats_dir))
    enc = (["--publish-enc", args.record_enc] if "record_enc" in given
           or "publish_enc" not in cfg.sections["extractor"] else [])
    for child_name, group in groups:
        argv = ["extractor", "--publish", publish[group[0]]]
        if record_dir:
            argv += [*enc, "--publish-wait", "10"]  # a file waits for the recorder: recorded from frame 0
        if "realtime" in given:
            argv.append("--realtime")
        if not args.once:
            argv += [*cfg_argv, *over("frontend", "--push"), "--cameras", ",".join(group)]
        else:
            cam = cfg.cameras[group[0]]
            s = cam.sampling
            argv += ["--camera", cam.name, *(w for u in cam.sources for w in ("--source", u)),
                     "--push", own.get("frontend") or cfg.sockets["frontend"],
                     *(["--keyframes"] if s.keyframes else ["--fps", str(s.fps)] if s.fps
                       else ["--every", str(s.every)]),
                     *(["--realtime"] if cam.realtime and "realtime" not in given else []),
                     *(["--detect", cam.detect] if cam.detect else []),  # its motion gate and masks, as the file says
                     *(w for m in cam.masks for w in ("--mask", json.dumps(m.to_list()))),
                     *(["--metrics-port", str(cam.metrics_port)] if cam.metrics_port else []),
                     *_flag_words(cfg.sections["extractor"], {"cameras", "metrics_port", "publish", "push",
                                                              *({"publish_enc"} if enc else set())}),
                     *_flag_words({SECURITY[k]: v for k, v in cfg.sections.get("security", {}).items()}, set())]
        children.append(Child(child_name, "extractor", argv, stats_dir))
    if web:
        argv = ["web", *cfg_argv, *over("detections", "--detections"),
                *(["--port", str(args.web)] if "web" in given else []),
                *_given(["--events", args.events, "--data-dir", str(args.data_dir)], given),
                *(["--events", args.events] if "events" not in given and "events" not in cfg.sections["sink"] else []),
                *(["--recordings", record_dir] if "record" in given else [])]
        argv += [a for addr in dict.fromkeys(publish.values()) for a in ("--subscribe", addr)]
        children.append(Child("web", "web", argv, stats_dir))
    return children


def main(args: argparse.Namespace) -> int:
    log = configure("run")
    # signals first: a SIGTERM or SIGHUP while the children start must not kill run and orphan them
    stop = StopFlag().install()
    hangup = Hangup()
    signal.signal(signal.SIGHUP, hangup.handle)
    run_dir = Path(tempfile.mkdtemp(prefix="camwire-run-"))
    try:
        children = plan(args, run_dir)
    except ValueError as exc:  # what was asked cannot be run: nothing has started yet
        shutil.rmtree(run_dir, ignore_errors=True)
        raise OperatorError(f"cannot start: {exc}") from None  # camwire.cli: one line, exit 2
    started = time.monotonic()
    for child in children:
        child.start()
        log.info("started", child=child.name, pid=child.proc.pid)
    try:
        code = supervise(children, stop, args.once, log, hangup)
    finally:
        shutdown(children, log)
        stats = collect_stats(children)
        stats["run"] = {"wall_s": round(time.monotonic() - started, 3),
                        "restarts": {c.name: len(c.starts) - 1 for c in children if len(c.starts) > 1},
                        "failed": sorted(c.name for c in children if c.failed)}
        write_stats(args.stats, stats)
        print(summary(stats), flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    return code


def supervise(children: list[Child], stop: StopFlag, once: bool, log,
              hangup: Hangup | None = None) -> int:
    """Restart what dies until stopped (or, with ``once``, until every camera is done), and pass
    a SIGHUP (``hangup`` taken) on to every running child, which reloads; the run's exit code: 1
    if a camera failed, 2 if a child refused its options, else 0."""
    # with --once, the run is over when these have exited 0 on their own
    last = [c for c in children if c.role in ("sink", "recorder")]
    extractors = [c for c in children if c.role == "extractor"]
    while not stop.is_set():
        if hangup is not None and hangup.take():
            running = [c for c in children if c.proc is not None and c.proc.poll() is None]
            for child in running:
                child.proc.send_signal(signal.SIGHUP)
            log.info("reload: SIGHUP passed on", children=[c.name for c in running])
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
            if child.role == "extractor" and rc in FINISHED:
                child.finished, child.failed = True, rc == EXIT_SOURCE_FAILED
                if child.failed:
                    log.error("camera failed; not restarted", child=child.name, returncode=rc)
                else:
                    log.info("source finished", child=child.name)
            elif rc == 0 and child in last and once:
                child.finished = True
            elif rc == 2:  # bad options or an address in use: a restart would only say so again
                log.error("child refused its options; stopping the run", child=child.name, returncode=rc)
                return 2
            else:
                delay = backoff_delay(child.recent_restarts(now) + 1)
                child.restart_at = now + delay
                log.error("child died", child=child.name, returncode=rc, restart_in_s=delay)
        if once and all(c.finished for c in last) and all(c.finished for c in extractors):
            log.info("every source processed; stopping", failed=[c.name for c in extractors if c.failed])
            break
        stop.wait(0.2)
    return 1 if any(c.failed for c in extractors) else 0


def shutdown(children: list[Child], log) -> None:
    """Stop in pipeline order, so what is in flight can still be delivered downstream.

    Workers go before the ventilator: a leaving worker tells it so and finishes what it holds.
    """
    for role in ("web", "extractor", "classifier", "ventilator", "recorder", "sink"):
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
    out: dict[str, Any] = {"extractor": {}, "ventilator": {}, "workers": {}, "sink": {}, "recorder": {}, "web": {}}
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
