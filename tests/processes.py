"""What the tests' helpers for real servers share (conftest, kafka_broker, s3_server, and
bench/upload.py, which imports no pytest): a free loopback port, a child process stopped
gently, then for sure, and a child's output read line by line with a deadline."""

from __future__ import annotations

import itertools
import json
import os
import select
import socket
import subprocess
import time

# Ports are handed out from below the kernel's ephemeral range (32768-60999 on Linux), so no
# outgoing connection of this machine can be given one between our check and the daemon's bind,
# and never twice in one run: binding port 0 and handing the number on let two callers (or a
# client's source port) end up on the same number. A run starts at an offset of its own, so two
# runs side by side rarely meet; a port some other process holds is skipped.
PORT_RANGE = (20000, 32000)
_ports = itertools.count()
_start = os.getpid() * 97 % (PORT_RANGE[1] - PORT_RANGE[0])


def _bindable(port: int) -> bool:
    for host in ("127.0.0.1", "0.0.0.0"):  # daemons bind either
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A TCP port nobody holds now and this run has not handed out before."""
    span = PORT_RANGE[1] - PORT_RANGE[0]
    for _ in range(span):
        port = PORT_RANGE[0] + (_start + next(_ports)) % span
        if _bindable(port):
            return port
    raise RuntimeError("no free port left in the test range")


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``; nothing if it is not running."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class OutputLines:
    """A child's output pipe read as lines, each wait bounded (``os.read`` on the pipe itself, so no
    line can sit unseen in a file object's buffer while ``select`` waits)."""

    def __init__(self, pipe) -> None:
        self.fd = pipe.fileno()
        self.pending = b""
        self.seen: list[str] = []

    def until(self, text: str, timeout: float) -> str:
        """The next line holding ``text``; AssertionError (with what came) if none within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.pending:
                line, self.pending = self.pending.split(b"\n", 1)
                self.seen.append(line.decode(errors="replace"))
                if text in self.seen[-1]:
                    return self.seen[-1]
            left = deadline - time.monotonic()
            chunk = os.read(self.fd, 65536) if left > 0 and select.select([self.fd], [], [], left)[0] else b""
            if not chunk:
                raise AssertionError(f"no line with {text!r}; the output:\n" + "\n".join(self.seen)[-3000:])
            self.pending += chunk

    def drain(self, timeout: float) -> None:
        """Read to the end of the output (the child exiting), so a child never blocks on a full pipe."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and select.select([self.fd], [], [], left)[0]:
            if not os.read(self.fd, 65536):
                return


def log_records(path) -> list[dict]:
    """The JSON lines of a daemon's log file so far (lines that are not a JSON object skipped)."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
