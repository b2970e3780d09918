"""``camwire run``: the whole pipeline on one host, each daemon a supervised child process.
Its flags, the children started, watched and stopped, and their counters summed at the end;
which children and with which command lines is camwire.plan's.

Two ways to say what runs: ``--config camwire.toml`` (the file's cameras and each daemon's
settings: MQTT, webhook, metrics ports, the recorder if its section names a ``dir``), or
``--camera NAME=URL`` flags.

The sink, the ventilator and the recorder start first; the workers, extractors and console
once those have said they are ready (common.notify: their sockets are bound), so nothing is
sent to an address that no one has bound yet.

SIGHUP is passed on to every running child, and each reloads (common.daemon); run goes on.
When run starts the web console it says where, in one line on stdout (a terminal or not):
``camwire: console at http://127.0.0.1:8080/ (events, live views, recordings)``.

A child that exits 2 refused its options (or an address is in use): a restart would only say so
again, so the run stops with exit 2. Any other death (a crash is exit 1, with its traceback in the
log) is restarted with a capped backoff and the restart logged. An extractor that
exits 0 (its files all read to the end) or 3 (EXIT_SOURCE_FAILED: a file camera can never work)
has finished and stays down. With ``--once`` (every source a file) the run ends when every
camera has ended or failed and the sink has every result; it exits 1 if any camera failed, else
0. ``--stats`` then holds each component's counters, summed over restarts.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camwire.plan import plan as planned
from camwire.sink import daemon as sink_daemon
from camwire.classifier import worker as worker_daemon
from camwire.common.counters import merge, write_stats
from camwire.common.daemon import EXIT_FAILED, EXIT_OK, EXIT_OPTIONS, EXIT_SOURCE_FAILED
from camwire.common.config import Config
from camwire.common.lifecycle import Hangup, StopFlag, backoff_delay
from camwire.common.logs import configure
from camwire.common.notify import Listener, notify
from camwire.common.sockets import OperatorError
from camwire.common.settings import RunSettings, WebSettings
from camwire.common.settings.model import build

STOP_TIMEOUT_S = 10.0
RESTART_WINDOW_S = 60.0
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
FINISHED = (EXIT_OK, EXIT_SOURCE_FAILED)  # an extractor that exits so is done: never restarted
RECEIVERS = ("sink", "ventilator", "recorder")  # started, and waited for, before what sends to them
READY_WAIT_S = 60.0  # past this the rest start anyway (a sink replaying a long events file, say)
READY_POLL_S = 0.02


def check(args: RunSettings, build_detectors: bool = True) -> None:
    """run's flags judged before anything starts, by the hooks of the daemons they go to (the
    workers' detector flags, the sink's ``--rules``): a mistake is refused once here, never by a
    child restarted over and over. ValueError naming the flag."""
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, not {args.workers}")
    worker_daemon.check(args, build_detectors=build_detectors)
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


def plan(args: RunSettings, run_dir: Path) -> list[Child]:
    """The children of a run, in start order (camwire.plan), each with its stats files in the run
    folder. Raises ValueError saying what cannot be run."""
    stats_dir = run_dir / "stats"
    return [Child(p.name, p.role, p.argv, stats_dir, env=p.env) for p in planned(args, run_dir)]


def main(args: RunSettings) -> int:
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
    listener = None
    try:
        # what the others send to first, and the others once it is ready: a worker's first results
        # then find the sink bound, not a queue that fills while it starts (and drops, counted)
        listener = Listener(f"@camwire-run-{os.getpid()}-{secrets.token_hex(4)}")
        first = [c for c in children if c.role in RECEIVERS]
        for child in first:
            child.env["NOTIFY_SOCKET"] = listener.address  # it says READY=1 once its sockets are bound
            child.start()
            log.info("started", child=child.name, pid=child.proc.pid)
        wait_ready(first, listener, stop, log)
        for child in children:
            if child not in first and not stop.is_set():
                child.start()
                log.info("started", child=child.name, pid=child.proc.pid)
        notify()  # run itself, to a service manager that started it (its own NOTIFY_SOCKET)
        url = console_url(args, children)
        if url is not None:  # in plain words, not only in the console's own log line
            print(f"camwire: console at {url} (events, live views, recordings)", flush=True)
        code = supervise(children, stop, args.once, log, hangup)
    finally:
        shutdown(children, log)
        stats = collect_stats(children)
        stats["run"] = {"wall_s": round(time.monotonic() - started, 3),
                        "restarts": {c.name: len(c.starts) - 1 for c in children if len(c.starts) > 1},
                        "failed": sorted(c.name for c in children if c.failed)}
        write_stats(args.stats, stats)
        print(summary(stats), flush=True)
        if listener is not None:
            listener.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    return code


def wait_ready(children: list[Child], listener: Listener, stop: StopFlag, log) -> None:
    """Until every child of ``children`` has said it is ready (common.notify), exited (supervise
    then says why), or READY_WAIT_S has passed (said, and the run goes on: a sink slow to start
    costs its first results, not the run)."""
    deadline = time.monotonic() + READY_WAIT_S
    waiting = list(children)
    while waiting and not stop.is_set():
        ready = listener.ready()
        for child in waiting:
            if child.proc.pid not in ready and child.proc.poll() is not None:
                log.warning("exited before it was ready; starting the rest (it is restarted, or its "
                            "refusal stops the run)", child=child.name, returncode=child.proc.returncode)
        waiting = [c for c in waiting if c.proc.pid not in ready and c.proc.poll() is None]
        if waiting and time.monotonic() >= deadline:
            log.warning("not ready in time; starting the rest", children=[c.name for c in waiting],
                        waited_s=READY_WAIT_S)
            return
        if waiting:
            stop.wait(READY_POLL_S)
    if children:
        log.info("ready", children=[c.name for c in children if c.proc.pid in listener.pids])


def console_url(args: RunSettings, children: list[Child]) -> str | None:
    """Where the web console that run starts listens (None: it starts none): the port run gives it
    (``--web PORT``), else the file's ``[web]`` port, else the console's default; the file's bind
    address, a wildcard one written as this host's loopback."""
    web = next((c for c in children if c.role == "web"), None)
    if web is None:
        return None
    cfg = getattr(args, "config", None)
    settings = cfg.settings("web") if isinstance(cfg, Config) else build(WebSettings, {})
    port = web.argv[web.argv.index("--port") + 1] if "--port" in web.argv else settings.port
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.bind, settings.bind)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


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
            elif rc == EXIT_OK and child in last and once:
                child.finished = True
            elif rc == EXIT_OPTIONS:  # bad options or an address in use: a restart would only say so again
                log.error("child refused its options; stopping the run", child=child.name, returncode=rc)
                return EXIT_OPTIONS
            else:
                delay = backoff_delay(child.recent_restarts(now) + 1)
                child.restart_at = now + delay
                log.error("child died", child=child.name, returncode=rc, restart_in_s=delay)
        if once and all(c.finished for c in last) and all(c.finished for c in extractors):
            log.info("every source processed; stopping", failed=[c.name for c in extractors if c.failed])
            break
        stop.wait(0.2)
    return EXIT_FAILED if any(c.failed for c in extractors) else EXIT_OK


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
    out: dict[str, Any] = {"extractor": {}, "ventilator": {}, "classifier": {}, "sink": {}, "recorder": {}, "web": {}}
    for child in children:
        for path in sorted(child.stats_dir.glob(f"{child.name}.*.json")):
            data = json.loads(path.read_text())
            if child.role == "extractor":
                merge(out["extractor"], data)
            elif child.role == "classifier":
                merge(out["classifier"].setdefault(data.pop("name", child.name), {}), data)  # per worker
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
    workers = stats.get("classifier", {})
    if workers:
        lines.append("classifier: " + ", ".join(f"{w}={sum(v.get('processed', {}).values())}" for w, v in sorted(workers.items())))
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
