"""``camwire run`` restarts a child that dies, says so in its log, passes SIGHUP on to its children
(each reloads), and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import free_port, scrape, value


def camwire_run(tmp_path: Path, clip: Path, *flags: str) -> subprocess.Popen:
    """``camwire run`` of one camera reading ``clip`` with the ``covered`` detector, its JSON log on
    a pipe (stderr), its summary on stdout (a pipe too)."""
    return subprocess.Popen([sys.executable, "-m", "camwire", "run", "--camera", f"cam={clip}", "--detector",
                             "covered", "--events", str(tmp_path / "events.jsonl"), *flags],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "CAMWIRE_LOG_FORMAT": "json"})


def test_dead_child_is_restarted_and_logged(tmp_path: Path, sample_clip: Path) -> None:
    stats = tmp_path / "stats.json"
    run = camwire_run(tmp_path, sample_clip, "--workers", "2", "--realtime", "--stats", str(stats))
    try:
        victim = None
        for line in run.stderr:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # the children share this pipe: a long line of theirs may come in pieces
            if not isinstance(rec, dict):
                continue
            if rec.get("daemon") != "run":
                continue
            if rec["event"] == "started" and rec["child"] == "classifier-1":
                victim = rec["pid"]
            if rec["event"] == "started" and rec["child"].startswith("extractor"):
                os.kill(victim, signal.SIGKILL)
            if rec["event"] == "restarted":
                assert rec["child"] == "classifier-1" and rec["pid"] != victim
                break
        else:
            raise AssertionError("the run ended without restarting the killed worker")
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0
    assert json.loads(stats.read_text())["run"]["restarts"] == {"classifier-1": 1}
    assert "camwire run summary" in out


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet (a container's PID 1 may not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


def started(run: subprocess.Popen, until: str = "extractor") -> dict[str, int]:
    """Each child's pid as ``camwire run`` logs it starting, read until the first whose name starts
    with ``until`` (the extractor starts last: every child is up)."""
    pids = {}
    for line in run.stderr:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("daemon") == "run" and rec.get("event") == "started":
            pids[rec["child"]] = rec["pid"]
            if rec["child"].startswith(until):
                break
    return pids


def test_children_stop_when_run_is_killed(tmp_path: Path, sample_clip: Path) -> None:
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json"}
    run = subprocess.Popen([sys.executable, "-m", "camwire", "run", "--camera", f"cam={sample_clip}",
                            "--detector", "covered", "--workers", "1", "--realtime",
                            "--events", str(tmp_path / "events.jsonl")],
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    pids = {}
    try:
        pids = started(run)
        run.kill()  # SIGKILL: the supervisor gets no chance to stop anyone
        run.wait()
        deadline = time.monotonic() + 30
        while not all(gone(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)  # another process's exit cannot be awaited, only observed
        assert len(pids) == 4 and all(gone(pid) for pid in pids.values()), pids
    finally:
        for pid in pids.values():
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_sighup_is_passed_on_and_every_daemon_reloads(tmp_path: Path, sample_clip: Path) -> None:
    """SIGHUP to ``camwire run`` (systemd's ExecReload) does not stop it: each child reloads
    through its skeleton (its reloads counter, in its metrics) and none is restarted."""
    ports = {"sink": free_port(), "ventilator": free_port(), "classifier": free_port(), "extractor": free_port()}
    cfg = tmp_path / "camwire.toml"
    cfg.write_text(f'[sink]\nmetrics_port = {ports["sink"]}\n\n[ventilator]\nmetrics_port = {ports["ventilator"]}\n\n'
                   f'[classifier]\ndetector = "covered"\nmetrics_port = {ports["classifier"] - 1}\n\n'  # classifier-1: +1
                   f'[extractor]\nmetrics_port = {ports["extractor"]}\n\n[run]\nworkers = 1\n\n'
                   f'[cameras.cam]\nurl = "{sample_clip}"\nrealtime = true\n')
    stats = tmp_path / "stats.json"
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json"}
    run = subprocess.Popen([sys.executable, "-m", "camwire", "run", "--config", str(cfg),
                            "--events", str(tmp_path / "events.jsonl"), "--stats", str(stats)],
                           stderr=open(tmp_path / "run.log", "wb"), stdout=subprocess.PIPE, text=True, env=env)

    def metric(daemon: str, name: str, **labels: str) -> float:
        try:
            return value(scrape(ports[daemon]), f"camwire_{daemon}_{name}", **labels)
        except OSError:
            return 0.0  # not serving yet

    def until(predicate, what: str) -> None:
        deadline = time.monotonic() + 90
        while not predicate():
            assert run.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"{what}; run log: {(tmp_path / 'run.log').read_text()[-3000:]}"
            time.sleep(0.2)  # another process's counters can only be polled

    try:
        # results at the sink: every daemon of the pipeline is in its loop, its SIGHUP handled
        until(lambda: metric("sink", "results_total") > 0, "no results reached the sink")
        run.send_signal(signal.SIGHUP)
        for daemon in ports:
            until(lambda: metric(daemon, "reloads_total", outcome="applied") >= 1, f"{daemon} did not reload")
        assert run.poll() is None
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert json.loads(stats.read_text())["run"]["restarts"] == {}
    assert "camwire run summary" in out


def test_flags_mode_puts_no_camera_url_on_a_child_command_line(tmp_path: Path) -> None:
    """``ps`` shows every user every command line; a child's environment only its owner and root."""
    url = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/stream1"  # nothing listens: it keeps reconnecting
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json"}
    run = subprocess.Popen([sys.executable, "-m", "camwire", "run", "--camera", f"door={url}",
                            "--detector", "covered", "--workers", "1", "--events", str(tmp_path / "events.jsonl")],
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        pids = started(run)
        for child, pid in pids.items():
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert not any(b"hunter2" in a for a in argv), (child, argv)
        extractor = pids["extractor-door"]
        argv = Path(f"/proc/{extractor}/cmdline").read_bytes().split(b"\0")
        assert b"${CAMWIRE_SOURCE_0}" in argv
        assert f"CAMWIRE_SOURCE_0={url}".encode() in Path(f"/proc/{extractor}/environ").read_bytes().split(b"\0")
        assert oct(Path(f"/proc/{extractor}/environ").stat().st_mode & 0o777) == "0o400"
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)


def test_what_others_send_to_is_bound_before_they_start(tmp_path: Path, sample_clip: Path) -> None:
    """``camwire run`` starts the sink and the ventilator first and the workers and extractors only
    once both have said they are ready (common.notify): when the first worker starts, the
    addresses it sends to are bound, so a fast worker's first results never queue for a sink
    still starting (where they were dropped as sink_full, and ``--once`` never drained)."""
    stats = tmp_path / "stats.json"
    run = camwire_run(tmp_path, sample_clip, "--workers", "2", "--once", "--stats", str(stats))
    try:
        pids = started(run, until="classifier")
        bound = {**flags_of(pids["sink"], "--bind"), **flags_of(pids["ventilator"], "--frontend", "--backend")}
        assert len(bound) == 3 and all(addr.startswith("ipc://") for addr in bound.values()), bound
        for flag, addr in bound.items():
            assert Path(addr[len("ipc://"):]).exists(), f"{flag} {addr} not bound when the first worker started"
        run.communicate(timeout=300)
        assert run.returncode == 0
    finally:
        if run.poll() is None:
            run.kill()
    got = json.loads(stats.read_text())
    assert "sink_full" not in json.dumps(got)
    assert got["sink"]["results"]["cam"] == got["extractor"]["cam"]["sent"] > 0


def flags_of(pid: int, *flags: str) -> dict[str, str]:
    """The values of ``flags`` on a running process's command line."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return {flag: argv[argv.index(flag) + 1] for flag in flags if flag in argv}
