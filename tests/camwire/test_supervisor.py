"""``camwire run`` restarts a child that dies, says so in its log, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def test_dead_child_is_restarted_and_logged(tmp_path: Path, sample_clip: Path) -> None:
    stats = tmp_path / "stats.json"
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json"}
    run = subprocess.Popen([sys.executable, "-m", "camwire", "run", "--camera", f"cam={sample_clip}",
                            "--detector", "motion", "--workers", "2", "--realtime",
                            "--events", str(tmp_path / "events.jsonl"), "--stats", str(stats)],
                           stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
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


def test_children_stop_when_run_is_killed(tmp_path: Path, sample_clip: Path) -> None:
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json"}
    run = subprocess.Popen([sys.executable, "-m", "camwire", "run", "--camera", f"cam={sample_clip}",
                            "--detector", "motion", "--workers", "1", "--realtime",
                            "--events", str(tmp_path / "events.jsonl")],
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    pids = {}
    try:
        for line in run.stderr:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("daemon") == "run" and rec.get("event") == "started":
                pids[rec["child"]] = rec["pid"]
                if rec["child"].startswith("extractor"):
                    break  # the extractor starts last: every child is up
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
