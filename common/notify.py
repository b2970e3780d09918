"""Readiness, told as systemd's service manager protocol has it (sd_notify(3)): one datagram,
``READY=1`` and ``MAINPID=<pid>``, to the AF_UNIX socket ``$NOTIFY_SOCKET`` names (a path, or
``@name`` in the abstract namespace), once a daemon has bound its sockets and enters its loop.

Who listens: ``camwire run`` (camwire.supervisor), which starts the extractors and workers only
when the sink and the ventilator are ready, so a fast worker's first results never wait in a
queue for a sink that is still importing its modules; and systemd, for a unit of
``Type=notify`` (the units in deploy/systemd are ``Type=exec``: their sandboxing has not been
tried with notify on a real systemd yet). Nothing listens: nothing is sent. A message is a few
ASCII bytes; nothing else crosses."""

from __future__ import annotations

import os
import socket

READY = "READY=1"


def notify(state: str = READY) -> bool:
    """Tell ``$NOTIFY_SOCKET`` (``state`` and this process's pid); whether it was sent. Never
    raises: a manager that went away must not stop the daemon."""
    where = os.environ.get("NOTIFY_SOCKET")
    if not where:
        return False
    address = "\0" + where[1:] if where.startswith("@") else where
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(f"{state}\nMAINPID={os.getpid()}".encode(), address)
        return True
    except OSError:
        return False


class Listener:
    """The manager's side (camwire.supervisor): a datagram socket at ``path`` whose messages name
    the pids that are ready; read without waiting by :meth:`ready`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.pids: set[int] = set()

    def ready(self) -> set[int]:
        """The pids that have said READY=1 so far."""
        while True:
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return self.pids
            fields = dict(line.split("=", 1) for line in data.decode("ascii", "replace").splitlines() if "=" in line)
            if fields.get("READY") == "1" and fields.get("MAINPID", "").isdigit():
                self.pids.add(int(fields["MAINPID"]))

    def close(self) -> None:
        self.sock.close()
