"""No process a test run starts may outlive it: every child of the run carries a mark in its
environment (inherited through any number of forks, ``camwire run``'s children included), and at
the end of the session any process still carrying it is named, killed, and fails the run."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

MARK = "CAMWIRE_TEST_RUN"


def mark_run() -> str:
    """Give this run (and so every process it starts from now on) a mark of its own."""
    os.environ[MARK] = os.environ.get(MARK) or uuid.uuid4().hex
    return os.environ[MARK]


def survivors(mark: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process but this one whose environment carries ``mark``."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            if not cmdline or (proc / "stat").read_text().split(") ")[-1].startswith("Z"):
                continue  # a zombie's parent is still to reap it: it holds nothing
        except OSError:
            continue  # gone meanwhile, or not ours to read
        found.append((int(proc.name), cmdline))
    return found


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
