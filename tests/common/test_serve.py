"""common.serve: questions and answers between hosts, over a real ROUTER and DEALERs on loopback
TCP: an op's body and blobs, an op that cannot answer, an unknown op, a question that does not
decode (counted, the server goes on), a slow op that does not hold up a quick one, and a daemon
that does not answer (Unreachable, and a late answer never taken for the next question's)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import zmq

from camwire.common.serve import Client, Refused, Server, Unreachable, bind_server


@pytest.fixture
def served():
    ctx = zmq.Context()
    release = threading.Event()
    malformed: list[str] = []

    def slow(_args: dict[str, Any]) -> str:
        release.wait(30)
        return "slow"

    def missing(args: dict[str, Any]) -> None:
        raise LookupError(f"no {args['name']}")

    ops = {"echo": lambda args: ({"got": args}, [b"\x00blob", b""]), "slow": slow, "missing": missing}
    sock = bind_server(ctx, "tcp://127.0.0.1:*")
    addr = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    server = Server(sock, ops, malformed=malformed.append)
    server.start()
    client = Client(ctx, addr, "sink")
    yield client, addr, release, malformed, ctx
    release.set()
    client.close()
    server.close()
    ctx.term()


def test_an_op_answers_its_body_and_blobs(served) -> None:
    client, *_ = served
    body, blobs = client.call("echo", 10, camera="door", ts=1.5)
    assert body == {"got": {"camera": "door", "ts": 1.5}} and blobs == [b"\x00blob", b""]


def test_what_cannot_be_answered_is_refused_with_its_line(served) -> None:
    client, *_ = served
    with pytest.raises(Refused, match="no door"):
        client.call("missing", 10, name="door")
    with pytest.raises(Refused, match="unknown op 'nonesuch'"):
        client.call("nonesuch", 10)
    assert client.call("echo", 10)[0] == {"got": {}}  # and the socket still serves


def test_a_question_that_does_not_decode_is_counted_and_the_server_goes_on(served) -> None:
    client, addr, _release, malformed, ctx = served
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(addr)
    raw.send(b"\xc1 not msgpack")
    raw.send_multipart([b"two", b"parts"])
    assert client.call("echo", 10)[0] == {"got": {}}
    raw.close()
    assert sorted(malformed) == ["serve_ask", "serve_parts"]


def test_a_slow_answer_does_not_hold_up_a_quick_one(served) -> None:
    client, addr, release, _malformed, ctx = served
    other = Client(ctx, addr, "sink")
    out: list[Any] = []
    slow = threading.Thread(target=lambda: out.append(other.call("slow", 30)[0]))
    slow.start()
    assert client.call("echo", 10, n=1)[0] == {"got": {"n": 1}}  # while the slow one is still being made
    release.set()
    slow.join(30)
    other.close()
    assert out == ["slow"]


def test_no_answer_is_unreachable_and_a_late_answer_is_never_taken_for_the_next(served) -> None:
    client, _addr, release, *_ = served
    with pytest.raises(Unreachable, match="no answer"):
        client.call("slow", 0.3)
    release.set()  # its answer now comes, to a socket closed for it
    assert client.call("echo", 10, n=2)[0] == {"got": {"n": 2}}
    ctx = zmq.Context()
    nobody = Client(ctx, "tcp://127.0.0.1:1", "sink")  # port 1: nothing listens there
    with pytest.raises(Unreachable, match="tcp://127.0.0.1:1"):
        nobody.call("hello", 0.3)
    nobody.close()
    ctx.term()


def test_a_plain_serve_other_hosts_could_reach_is_refused(tmp_path) -> None:
    """Without CURVE, a serve on an address other hosts reach would hand anyone the recordings:
    the daemon refuses it in one line (exit 2); on loopback it starts."""
    import subprocess
    import sys

    events = tmp_path / "events.jsonl"
    done = subprocess.run([sys.executable, "-m", "camwire", "sink", "--bind", f"ipc://{tmp_path}/results",
                           "--events", str(events), "--serve", "tcp://0.0.0.0:0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "--serve tcp://0.0.0.0:0 without CURVE" in done.stderr and len(done.stderr.strip().splitlines()) == 1
