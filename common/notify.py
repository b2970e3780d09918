"""Readiness, told as systemd's service manager protocol has it (sd_notify(3)): one datagram,
``READY=1`` and ``MAINPID=<pid>``, to the AF_UNIX socket ``$NOTIFY_SOCKET`` names (a path, or
``@name`` in the abstract namespace), once a daemon has bound its sockets and enters its loop.

Who listens: ``camwire run`` (camwire.supervisor), which starts the extractors and workers only
when the sink, the ventilator and the recorder are ready, so a fast worker's first results never wait in a
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
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            # never waits: a manager that stopped reading (its queue of datagrams full) must not
            # hold the daemon before its loop
            sock.sendto(f"{state}\nMAINPID={os.getpid()}".encode(), socket.MSG_DONTWAIT, _sockaddr(where))
        return True
    except OSError:  # BlockingIOError included: not told, the daemon goes on
        return False


def _sockaddr(where: str) -> str:
    """``$NOTIFY_SOCKET``'s form as a socket address: ``@name`` is the abstract namespace."""
    return "\0" + where[1:] if where.startswith("@") else where


class Listener:
    """The manager's side (camwire.supervisor): a datagram socket at ``address`` (``$NOTIFY_SOCKET``'s
    form: ``@name`` in the abstract namespace, no file, no path length to mind) whose messages name
    the pids that are ready; read without waiting by :meth:`ready`."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(_sockaddr(address))
        except OSError:
            self.sock.close()
            raise
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
