"""``--serve`` has clients of its own where ``--curve-clients DIR/serve/`` exists: a host let in
to send frames or results (its key in ``DIR``) is refused there, where status, clips and reloads
are asked; a console's key in ``serve/`` gets its answers. Taking a key out of ``serve/`` (or
making the folder) plus a reload cuts it off --serve, and only there.

A real sink with CURVE on over TCP, keys made by ``camwire keygen``, asked as the console and
``camwire status`` ask (common.serve.Client)."""

from __future__ import annotations

import argparse
import shutil
import signal
import time
from pathlib import Path

import zmq
from zmq.utils.monitor import recv_monitor_message

from camwire.common.curve import Curve, read_keys
from camwire.common.serve import Client, Unreachable
from conftest import Daemons, tcp
from test_refusals import keygen


def asker(keys: Path, name: str, servers: Path) -> Curve:
    curve = Curve.from_args(argparse.Namespace(curve_key=str(keys / f"{name}.key_secret"), curve_clients=None,
                                               curve_servers=str(servers)))
    assert curve is not None
    return curve


def answers(ctx: zmq.Context, addr: str, curve: Curve) -> bool:
    """Whether the sink's --serve answers ``hello`` to this key (a refused handshake: no answer)."""
    client = Client(ctx, addr, "sink", curve)
    try:
        client.call("hello", timeout=3.0)
        return True
    except Unreachable:
        return False
    finally:
        client.close()


def handshakes(ctx: zmq.Context, addr: str, keys: Path, name: str, server: Path) -> bool:
    """Whether a PUSH with this key gets through the CURVE handshake at ``addr`` (the sink's results)."""
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    public, secret = read_keys(keys / f"{name}.key_secret", secret=True)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)  # type: ignore[arg-type]
    sock.setsockopt(zmq.CURVE_SERVERKEY, read_keys(server, secret=False)[0])
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    sock.connect(addr)
    try:
        assert monitor.poll(30_000), f"no handshake with {addr}"
        return recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
    finally:
        sock.disable_monitor()
        monitor.close()
        sock.close()


def test_serve_lets_in_only_its_own_clients(tmp_path: Path, daemons: Daemons, zctx: zmq.Context) -> None:
    keys = tmp_path / "keys"
    for name in ("sinkhost", "worker", "console"):
        keygen(keys, name)
    clients, servers = keys / "clients", keys / "servers"
    (clients / "serve").mkdir(parents=True)
    servers.mkdir()
    shutil.copy(keys / "sinkhost.key", servers / "sink.key")
    for name in ("worker", "console"):
        shutil.copy(keys / f"{name}.key", clients / f"{name}.key")
    shutil.copy(keys / "console.key", clients / "serve" / "console.key")
    results, serve = tcp(), tcp()
    proc = daemons.start("sink", "sink", "--bind", results, "--serve", serve, "--events", str(tmp_path / "e.jsonl"),
                         "--curve-key", str(keys / "sinkhost.key_secret"), "--curve-clients", str(clients))
    worker, console = asker(keys, "worker", servers), asker(keys, "console", servers)

    assert answers(zctx, serve, console)
    assert not answers(zctx, serve, worker)  # a client of the sink's results, not of its --serve
    assert handshakes(zctx, results, keys, "worker", servers / "sink.key")  # ... where it is let in still

    shutil.copy(keys / "worker.key", clients / "serve" / "worker.key")  # listed for --serve, plus a reload
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while not answers(zctx, serve, worker):
        assert time.monotonic() < deadline and proc.poll() is None, "the key listed in serve/ was never let in"

    (clients / "serve" / "console.key").unlink()  # out of serve/ only: cut off --serve, a client elsewhere still
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while answers(zctx, serve, console):
        assert time.monotonic() < deadline and proc.poll() is None, "a key taken out of serve/ was still answered"
    assert handshakes(zctx, results, keys, "console", servers / "sink.key")
    assert answers(zctx, serve, worker)
    assert daemons.stop("sink") == 0
