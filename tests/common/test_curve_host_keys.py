"""Server keys per host (issue 26): a daemon connecting to tcp://HOST:PORT pins ``servers/HOST.key``
first, else the role's ``servers/ROLE.key``; an address with neither is refused at start, naming
the address and both files; a key file it never uses is never read."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camwire.common.curve import Curve, host_of, keygen, read_keys
from camwire.common.sockets import OperatorError

ROOT = Path(__file__).resolve().parents[2]


def args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"curve_key": None, "curve_clients": None, "curve_servers": None, **kw})


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """This daemon's secret, a servers folder, and the public keys of three would-be servers."""
    _, secret = keygen(tmp_path / "own", "host")
    servers = tmp_path / "servers"
    servers.mkdir()
    out = {"secret": secret, "servers": servers}
    for name in ("a", "b", "role"):
        out[name] = keygen(tmp_path / name, name)[0]
    return out


def public(path: Path) -> bytes:
    return read_keys(path, secret=False)[0]


def test_the_hosts_own_key_comes_first_then_the_roles(keys: dict[str, Path]) -> None:
    servers = keys["servers"]
    (servers / "127.0.0.1.key").write_bytes(keys["a"].read_bytes())
    (servers / "127.0.0.2.key").write_bytes(keys["b"].read_bytes())
    (servers / "extractor.key").write_bytes(keys["role"].read_bytes())
    curve = Curve.from_args(args(curve_key=str(keys["secret"]), curve_servers=str(servers),
                                 subscribe=["tcp://127.0.0.1:5559", "tcp://127.0.0.2:5559", "tcp://10.9.9.9:5559"]))
    assert curve is not None
    assert curve.require("extractor", "tcp://127.0.0.1:5559") == public(keys["a"])
    assert curve.require("extractor", "tcp://127.0.0.2:6000") == public(keys["b"])  # any port of that host
    assert curve.require("extractor", "tcp://10.9.9.9:5559") == public(keys["role"])  # no key of its own: the role's
    assert curve.require("extractor") == public(keys["role"])
    assert curve.require("sink", "tcp://127.0.0.2:5557") == public(keys["b"])  # a host's key, whatever it runs


def test_an_address_without_a_key_is_refused_at_start_naming_it_and_the_files(keys: dict[str, Path]) -> None:
    servers = keys["servers"]
    (servers / "127.0.0.1.key").write_bytes(keys["a"].read_bytes())
    with pytest.raises(OperatorError) as refused:
        Curve.from_args(args(curve_key=str(keys["secret"]), curve_servers=str(servers),
                             subscribe=["tcp://127.0.0.1:5559", "tcp://127.0.0.2:5559"]))
    text = str(refused.value)
    assert text.startswith("--curve-servers") and "tcp://127.0.0.2:5559" in text
    assert str(servers / "127.0.0.2.key") in text and str(servers / "extractor.key") in text
    with pytest.raises(OperatorError, match="--curve-servers is not set.*tcp://127.0.0.1:5555"):
        Curve.from_args(args(curve_key=str(keys["secret"]), push="tcp://127.0.0.1:5555"))


def test_a_key_file_never_used_is_never_read(keys: dict[str, Path]) -> None:
    servers = keys["servers"]
    (servers / "sink.key").write_text("not a key\n")  # another role's, broken: not this daemon's concern
    (servers / "ventilator.key").write_bytes(keys["role"].read_bytes())
    curve = Curve.from_args(args(curve_key=str(keys["secret"]), curve_servers=str(servers),
                                 push="tcp://127.0.0.1:5555"))
    assert curve is not None and curve.require("ventilator", "tcp://127.0.0.1:5555") == public(keys["role"])
    with pytest.raises(OperatorError, match="sink.key: not a public key file"):  # the day it is used, named
        curve.require("sink", "tcp://127.0.0.1:5557")


@pytest.mark.parametrize("addr, host", [
    ("tcp://10.0.0.2:5559", "10.0.0.2"), ("tcp://cam-host.lan:5559", "cam-host.lan"), ("tcp://[::1]:5559", "::1"),
    ("tcp://10.0.0.1;10.0.0.2:5559", "10.0.0.2"), ("ipc:///run/camwire/x", None), (None, None),
])
def test_the_host_of_an_address(addr: str | None, host: str | None) -> None:
    assert host_of(addr) == host


def test_check_config_names_the_servers_line_and_the_address(keys: dict[str, Path], tmp_path: Path) -> None:
    text = (f'[sockets]\nframes = "tcp://127.0.0.2:5559"\n\n[security]\nkey = "{keys["secret"]}"\n'
            f'servers = "{keys["servers"]}"\n\n[recorder]\ndir = "{tmp_path / "rec"}"\n')
    path = tmp_path / "camwire.toml"
    path.write_text(text)

    def check(*daemons: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "camwire", "check-config", str(path), "--daemons", ",".join(daemons)],
                              capture_output=True, text=True, cwd=ROOT, env=os.environ, timeout=60)

    done = check("recorder")
    assert done.returncode == 2 and f"{path}:6:" in done.stderr and "tcp://127.0.0.2:5559" in done.stderr
    assert check("ventilator", "sink").returncode == 0  # they connect to no extractor: no key of one needed
    (keys["servers"] / "127.0.0.2.key").write_bytes(keys["b"].read_bytes())
    assert check("recorder").returncode == 0
