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
from conftest import Daemons, free_port, scrape, tcp, value
from test_refusals import keygen


def asker(keys: Path, name: str, servers: Path) -> Curve:
    curve = Curve.from_args(argparse.Namespace(curve_key=str(keys / f"{name}.key_secret"), curve_clients=None,
                                               curve_servers=str(servers)))
    assert curve is not None
    return curve


def answers(ctx: zmq.Context, addr: str, curve: Curve, client: Client | None = None) -> bool:
    """Whether the sink's --serve answers ``hello`` to this key (a refused handshake: no answer);
    asked on a new connection, or on ``client``'s open one."""
    asking = client or Client(ctx, addr, "sink", curve)
    try:
        asking.call("hello", timeout=3.0)
        return True
    except Unreachable:
        return False
    finally:
        if client is None:
            asking.close()


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


def until(done, what: str, proc, timeout: float = 60.0) -> None:
    """Until ``done()`` (each try an answer or its 3 s without one): a sink's reload has no event to await."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline and proc.poll() is None, what
        time.sleep(0.1)  # a counter read from the metrics: nothing to await but its next value


def test_serve_lets_in_only_its_own_clients(tmp_path: Path, daemons: Daemons, zctx: zmq.Context) -> None:
    keys = tmp_path / "keys"
    for name in ("sinkhost", "worker", "console", "operator"):
        keygen(keys, name)
    clients, servers = keys / "clients", keys / "servers"
    (clients / "serve").mkdir(parents=True)
    servers.mkdir()
    shutil.copy(keys / "sinkhost.key", servers / "sink.key")
    for name in ("worker", "console"):  # hosts that send the sink results (a console sends switches)
        shutil.copy(keys / f"{name}.key", clients / f"{name}.key")
    for name in ("console", "operator"):  # who may ask --serve: the operator's key is listed there alone
        shutil.copy(keys / f"{name}.key", clients / "serve" / f"{name}.key")
    results, serve, port = tcp(), tcp(), free_port()
    proc = daemons.start("sink", "sink", "--bind", results, "--serve", serve, "--events", str(tmp_path / "e.jsonl"),
                         "--metrics-port", str(port), "--curve-key", str(keys / "sinkhost.key_secret"),
                         "--curve-clients", str(clients))
    worker, console, operator = (asker(keys, name, servers) for name in ("worker", "console", "operator"))

    def refused_on_serve() -> float:
        return value(scrape(port), "camwire_sink_handshakes_failed_total", socket=serve, reason="auth")

    # the console and the operator keep a connection open, as a console does: a reload must cut it
    open_console, open_operator = Client(zctx, serve, "sink", console), Client(zctx, serve, "sink", operator)
    until(lambda: answers(zctx, serve, console, open_console) and answers(zctx, serve, operator, open_operator),
          "--serve never answered", proc)
    assert handshakes(zctx, results, keys, "worker", servers / "sink.key")  # a client of the sink's results ...
    assert not answers(zctx, serve, worker)  # ... not of its --serve: refused there, and counted
    until(lambda: refused_on_serve() >= 1, "the refusal was never counted", proc)

    shutil.copy(keys / "worker.key", clients / "serve" / "worker.key")  # listed for --serve, plus a reload
    proc.send_signal(signal.SIGHUP)
    until(lambda: answers(zctx, serve, worker), "the key listed in serve/ was never let in", proc)

    # out of serve/, one at a time: the operator (listed nowhere else), then the console (still a
    # client of the results): each cut off --serve, its open connection too
    before = refused_on_serve()
    for name, curve, client in (("operator", operator, open_operator), ("console", console, open_console)):
        (clients / "serve" / f"{name}.key").unlink()
        proc.send_signal(signal.SIGHUP)
        until(lambda: not answers(zctx, serve, curve, client), f"{name}'s open connection was still answered", proc)
        assert not answers(zctx, serve, curve)  # nor a new one
    until(lambda: refused_on_serve() > before, "the refusals were never counted", proc)
    assert handshakes(zctx, results, keys, "console", servers / "sink.key")
    assert answers(zctx, serve, worker)
    open_console.close()
    open_operator.close()
    assert daemons.stop("sink") == 0
