"""Readiness (common.notify, sd_notify(3)'s datagram): a real daemon says READY=1 with its pid
once its sockets are bound, to a path or to the abstract namespace; with no NOTIFY_SOCKET
nothing is sent."""

from __future__ import annotations

import os
import select
import socket
import time
from pathlib import Path

from camwire.common.notify import Listener, notify


def test_a_daemon_says_it_is_ready_once_its_sockets_are_bound(daemons, tmp_path: Path, monkeypatch) -> None:
    listener = Listener(str(tmp_path / "notify"))
    bind = tmp_path / "results"
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    proc = daemons.start("sink", "sink", "--bind", f"ipc://{bind}", "--events", str(tmp_path / "events.jsonl"))
    monkeypatch.delenv("NOTIFY_SOCKET")
    deadline = time.monotonic() + 60
    while proc.pid not in listener.ready():
        assert proc.poll() is None and time.monotonic() < deadline, "the sink never said it was ready"
        select.select([listener.sock], [], [], 1.0)  # the datagram is what is awaited
    assert bind.exists()  # what others send to is there when it says so
    assert daemons.stop("sink") == 0
    listener.close()


def test_the_abstract_namespace_a_full_queue_and_no_socket_at_all(monkeypatch) -> None:
    """``@name`` (what camwire run gives its children); a manager that stopped reading, its queue
    of datagrams full, makes notify give up at once, never wait; no socket, nothing sent."""
    listener = Listener(f"@camwire-test-notify-{os.getpid()}")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
        assert notify()
        assert listener.ready() == {os.getpid()}
        told = sum(notify() for _ in range(10_000))  # nobody reads: the queue fills (net.unix.max_dgram_qlen)
        assert told < 10_000 and not notify()  # full: not told, and not stuck either
        monkeypatch.delenv("NOTIFY_SOCKET")
        assert not notify()
        monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
        assert not notify()  # a manager gone: said, never raised
    finally:
        listener.close()
