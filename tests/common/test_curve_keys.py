"""common.curve on its own: key files as keygen writes them, and the files a daemon refuses."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from camwire.common.curve import Curve, keygen, read_keys
from camwire.common.sockets import OperatorError

ROOT = Path(__file__).resolve().parents[2]


def args(**kw: str) -> argparse.Namespace:
    return argparse.Namespace(**{"curve_key": None, "curve_clients": None, "curve_servers": None, **kw})


def test_keygen_writes_a_private_secret_and_a_public_key(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "camwire", "keygen", "sink", "--dir", str(tmp_path / "keys")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    public, secret = tmp_path / "keys" / "sink.key", tmp_path / "keys" / "sink.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    pub, none = read_keys(public, secret=False)
    pub2, sec = read_keys(secret, secret=True)
    assert none is None and pub == pub2 and sec is not None
    assert sec.decode() not in public.read_text()
    assert zmq.curve_public(sec) == pub  # the pair belongs together
    # ZeroMQ's own reader takes the same files (a key made elsewhere with zmq.auth works too)
    assert zmq.auth.load_certificate(str(secret)) == (pub, sec)
    again = subprocess.run([sys.executable, "-m", "camwire", "keygen", "sink", "--dir", str(tmp_path / "keys")],
                           capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 2 and "never overwrites" in again.stderr
    assert read_keys(secret, secret=True)[1] == sec


def test_keygen_into_a_folder_it_may_not_make_says_so_in_one_line(tmp_path: Path) -> None:
    """As INSTALL.md's camwire user under a root-owned /etc/camwire would: one line, exit 2, no
    traceback (here a file stands where the folder's parent should be, which refuses root too)."""
    blocked = tmp_path / "etc-camwire"
    blocked.write_text("a file, not a folder")
    done = subprocess.run([sys.executable, "-m", "camwire", "keygen", "host", "--dir", str(blocked / "keys")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert "cannot make it" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_secret_key_others_may_read_is_refused_with_its_path(tmp_path: Path) -> None:
    _public, secret = keygen(tmp_path, "host")
    os.chmod(secret, 0o644)
    with pytest.raises(OperatorError) as exc:
        Curve.from_args(args(curve_key=str(secret)))
    assert str(secret) in str(exc.value) and "0644" in str(exc.value)
    os.chmod(secret, 0o640)  # group-readable is others too: a secret has one reader
    with pytest.raises(OperatorError):
        Curve.from_args(args(curve_key=str(secret)))
    os.chmod(secret, 0o600)
    assert Curve.from_args(args(curve_key=str(secret))) is not None


def test_files_that_are_not_keys_are_named(tmp_path: Path) -> None:
    (tmp_path / "junk.key_secret").write_text("hello\n")
    os.chmod(tmp_path / "junk.key_secret", 0o600)
    with pytest.raises(OperatorError, match="junk.key_secret: not a secret key file"):
        Curve.from_args(args(curve_key=str(tmp_path / "junk.key_secret")))
    with pytest.raises(OperatorError, match="missing.key_secret: cannot read"):
        Curve.from_args(args(curve_key=str(tmp_path / "missing.key_secret")))
    _, secret = keygen(tmp_path, "host")
    clients = tmp_path / "clients"
    clients.mkdir()
    (clients / "bad.key").write_text("public-key = short\n")
    with pytest.raises(OperatorError, match="bad.key: not a public key file"):
        Curve.from_args(args(curve_key=str(secret), curve_clients=str(clients)))
    with pytest.raises(OperatorError, match="need --curve-key"):
        Curve.from_args(args(curve_clients=str(clients)))


def test_the_secret_is_in_no_repr_and_reload_names_what_changed(tmp_path: Path) -> None:
    _, secret = keygen(tmp_path, "host")
    clients = tmp_path / "clients"
    clients.mkdir()
    a_pub, _ = keygen(tmp_path / "a", "a")
    b_pub, _ = keygen(tmp_path / "b", "b")
    (clients / "a.key").write_bytes(a_pub.read_bytes())
    curve = Curve.from_args(args(curve_key=str(secret), curve_clients=str(clients)))
    assert curve is not None
    assert curve.secret.decode() not in repr(curve)
    a_key, b_key = read_keys(a_pub, False)[0], read_keys(b_pub, False)[0]
    assert curve.callback("camwire", a_key) and not curve.callback("camwire", b_key)
    (clients / "b.key").write_bytes(b_pub.read_bytes())
    (clients / "a.key").unlink()
    assert curve.reload() == (["b.key"], ["a.key"])
    assert curve.callback("camwire", b_key) and not curve.callback("camwire", a_key)


def test_a_connect_needs_the_server_key_it_pins(tmp_path: Path) -> None:
    _, secret = keygen(tmp_path, "host")
    servers = tmp_path / "servers"
    servers.mkdir()
    with pytest.raises(OperatorError, match="no ventilator.key"):  # refused at start, not at the first connect
        Curve.from_args(args(curve_key=str(secret), curve_servers=str(servers), push="tcp://127.0.0.1:1"))
    curve = Curve.from_args(args(curve_key=str(secret), curve_servers=str(servers), push="ipc:///tmp/x"))
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.PUSH)
        with pytest.raises(OperatorError, match="no ventilator.key"):
            curve.prepare(sock, "tcp://127.0.0.1:1", False, "ventilator")
        curve.prepare(sock, "ipc:///tmp/x", False, "ventilator")  # ipc stays plain: no key needed
        assert sock.getsockopt(zmq.MECHANISM) == zmq.NULL
        sock.close(0)
    finally:
        ctx.term()
