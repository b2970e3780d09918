"""Several "hosts" on one machine, for tests of camwire spread over a network: each host is a Linux
network namespace with an address of its own on one switch, a hostname of its own, and a folder of
its own that no other host can see.

::

    with Network(tmp_path, ["a", "b"]) as net:          # skips (pytest.skip) where namespaces are refused
        a, b = net["a"], net["b"]
        b.start("ventilator", "ventilator", "--config", str(b.dir / "camwire.toml"))
        a.start("extractor", "extractor", "--config", str(a.dir / "camwire.toml"))
        net.cut("a"); ...; net.restore("a")            # a's cable pulled at the switch, and put back
        b.http_get("http://127.0.0.1:9102/metrics")    # the test, as a client on b's own loopback

The network:

- a *switch*: a namespace of its own (``cw<pid>sw``) holding one bridge, so nothing is added to the
  machine's own network and no firewall of the machine's sees the traffic;
- per host: a namespace (``cw<pid><name>``), one veth pair (``v<pid><name>`` on the switch's
  bridge, ``eth0`` in the host, ``10.R.0.X/24`` with R unique per run and X from 1), loopback up.

A process started on a host (:meth:`Host.start`, :meth:`Host.run`) runs through ``ip netns exec``
and ``unshare --uts --mount``: in the host's network, with the host's name as hostname
(``socket.gethostname()``: a worker's default name), and in a mount namespace of its own where the
other hosts' folders are covered by an empty read-only tmpfs: namespaces share the filesystem,
and this is what makes "no shared disk" true rather than merely intended. The exec chain has no
fork, so the ``Popen`` is the daemon itself: SIGTERM reaches it directly. Its output goes to
``HOST_DIR/logs/NAME.log``; its environment is the test's (the venv works, and the test run's
leak mark is inherited: tests/leaks.py).

Everything is undone by :meth:`Network.close` (the context manager's exit, including on failure):
every process stopped (SIGTERM, then SIGKILL after a grace period), every namespace deleted (with
it its veth and the bridge), the test's threads inside the namespaces ended.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLONE_NEWNET = 0x40000000
STOP_GRACE_S = 15.0
_runs = itertools.count()

# Run inside ``unshare --uts --mount`` (itself inside ``ip netns exec``): name the host, cover the
# other hosts' folders, then become the command. $1: hostname; then the folders up to "--"; then argv.
PRELUDE = r"""
set -e
hostname "$1"; shift
while [ "$1" != "--" ]; do mount -t tmpfs -o ro,size=4k,mode=0 "camwire-elsewhere" "$1"; shift; done
shift
exec "$@"
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def _enter_netns(path: str) -> None:
    """Move the calling thread (only it) into the network namespace at ``path``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


class Host:
    """One host: its namespace, address, folder and the processes started on it."""

    def __init__(self, net: "Network", name: str, index: int) -> None:
        self.net, self.name, self.index = net, name, index
        self.ns = f"cw{net.tag}{name}"
        self.veth = f"v{net.tag}{name}"  # the switch's end; the host's end is eth0
        self.addr = f"10.{net.subnet}.0.{index}"
        self.hostname = f"{net.prefix}{name}"
        self.dir = net.tmp / name
        self.logs = self.dir / "logs"
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopped: set[str] = set()  # the processes stopped on purpose (stop)
        self._inside: ThreadPoolExecutor | None = None
        self._forwards: list[Any] = []  # listeners and connections of forward(), closed with the host

    def __repr__(self) -> str:
        return f"Host({self.name}, {self.addr})"

    # -- processes -------------------------------------------------------------------------------

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` as run on this host: its network, its hostname, no other host's folder."""
        hidden = [str(h.dir) for h in self.net.hosts.values() if h is not self]
        return ["ip", "netns", "exec", self.ns, "unshare", "--uts", "--mount", "--", "sh", "-c", PRELUDE,
                "prelude", self.hostname, *hidden, "--", *command]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", **(extra or {})}

    def popen(self, name: str, command: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``command`` on this host, its output in ``logs/NAME.log``, its working folder the
        host's own; stopped by :meth:`stop` or the network's close."""
        if name in self.procs and self.procs[name].poll() is None:
            raise ValueError(f"{self.name}: {name} is running already")
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "ab") as log:
            proc = subprocess.Popen(self.argv(command), stdout=log, stderr=subprocess.STDOUT, env=self.env(env),
                                    cwd=self.dir, stdin=subprocess.DEVNULL)
        self.procs[name] = proc
        self.stopped.discard(name)
        return proc

    def start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """``camwire ARGV... --stats HOST_DIR/NAME.stats.json`` on this host, as ``name``."""
        return self.popen(name, [sys.executable, "-m", "camwire", *argv, "--stats", str(self.stats_path(name))],
                          env=env)

    def run(self, *command: str, timeout: float = 120.0, check: bool = False) -> subprocess.CompletedProcess:
        """``command`` on this host, to its end; its output captured."""
        done = subprocess.run(self.argv(command), capture_output=True, text=True, env=self.env(), cwd=self.dir,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"{self.name}: {' '.join(command)} exited {done.returncode}:\n"
                                 f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done

    def camwire(self, *argv: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "camwire", *argv, timeout=timeout, check=check)

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def stats_path(self, name: str) -> Path:
        return self.dir / f"{name}.stats.json"

    def stats(self, name: str) -> dict[str, Any]:
        return json.loads(self.stats_path(name).read_text())

    def exited(self) -> dict[str, int]:
        """The processes of this host that are no longer running, with their exit codes."""
        return {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}

    def died(self) -> dict[str, int]:
        """The processes of this host that exited without being stopped (:meth:`stop`)."""
        return {name: rc for name, rc in self.exited().items() if name not in self.stopped}

    def stop(self, name: str, timeout: float = STOP_GRACE_S) -> int:
        """SIGTERM, and SIGKILL if ``name`` has not exited within ``timeout``; its exit code."""
        self.stopped.add(name)
        return _stop([self.procs[name]], timeout)[0]

    def stop_all(self, timeout: float = STOP_GRACE_S) -> None:
        _stop(list(self.procs.values()), timeout)

    # -- CURVE keys: each host makes its own pair; only public keys travel ------------------------

    @property
    def keys(self) -> Path:
        return self.dir / "keys"

    def keygen(self, name: str | None = None) -> tuple[Path, Path]:
        """``camwire keygen NAME`` run on this host, into its ``keys/`` (NAME: the host's name):
        the public key file, and the secret one (0600), which never leaves this host's folder."""
        name = name or self.name
        self.camwire("keygen", name, "--dir", str(self.keys), timeout=60)
        for folder in ("clients", "servers"):
            (self.keys / folder).mkdir(mode=0o750, exist_ok=True)
        return self.keys / f"{name}.key", self.keys / f"{name}.key_secret"

    def allow(self, public: Path, as_name: str) -> Path:
        """A client's public key copied into this host's ``keys/clients/`` (as an operator would
        copy it over): the client may connect to what this host binds."""
        dest = self.keys / "clients" / f"{as_name}.key"
        dest.write_bytes(public.read_bytes())
        return dest

    def pin(self, public: Path, server: str) -> Path:
        """A server's public key copied into this host's ``keys/servers/SERVER.key``: one key for
        a role (ventilator, sink, extractor), for a site where one pair stands for every host of
        it; :meth:`pin_host` is the per-host form."""
        dest = self.keys / "servers" / f"{server}.key"
        dest.write_bytes(public.read_bytes())
        return dest

    def pin_host(self, public: Path, server: "Host") -> Path:
        """A server host's public key copied into this host's ``keys/servers/ADDR.key`` (ADDR: the
        server's address, the host part of ``tcp://ADDR:PORT``): the per-host form, looked for
        before the role's key (common.curve)."""
        dest = self.keys / "servers" / f"{server.addr}.key"
        dest.write_bytes(public.read_bytes())
        return dest

    def security(self, key: Path) -> str:
        """The ``[security]`` section for this host's camwire.toml, with its own secret ``key``."""
        return (f'[security]\nkey = "{key}"\nclients = "{self.keys / "clients"}"\n'
                f'servers = "{self.keys / "servers"}"\n')

    # -- the test as a client on this host -------------------------------------------------------

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 60.0) -> Any:
        """``fn(*args)`` run in a thread of the test that lives in this host's network namespace
        (so its sockets are this host's: 127.0.0.1 is the host's own loopback)."""
        if self._inside is None:
            path = f"/run/netns/{self.ns}"
            self._inside = ThreadPoolExecutor(1, thread_name_prefix=f"in-{self.ns}",
                                              initializer=_enter_netns, initargs=(path,))
        return self._inside.submit(fn, *args).result(timeout=timeout)

    def http_get(self, url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> bytes:
        """GET ``url`` from this host; urllib's errors as they are (URLError while nothing listens)."""
        def get() -> bytes:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.read()
        return self.call(get, timeout=timeout + 5)

    def forward(self, port: int) -> int:
        """A port on the test's own loopback that reaches this host's ``127.0.0.1:port``: a
        browser run by the test (outside every namespace) reaches a console bound on this host's
        loopback. Each connection accepted out here is joined to one made in here (a socket
        belongs to the namespace it was made in), bytes pumped both ways."""
        import socket

        listener = socket.create_server(("127.0.0.1", 0))
        self._forwards.append(listener)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(1 << 16):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        def accept() -> None:
            while True:
                try:
                    outside, _ = listener.accept()
                except OSError:
                    return  # closed with the host
                try:
                    inside = self.call(socket.create_connection, ("127.0.0.1", port), timeout=10)
                except Exception:  # noqa: BLE001 - nothing listens there (yet): the client sees a close
                    outside.close()
                    continue
                self._forwards += [outside, inside]
                for a, b in ((outside, inside), (inside, outside)):
                    threading.Thread(target=pump, args=(a, b), daemon=True).start()

        threading.Thread(target=accept, name=f"forward-{self.name}-{port}", daemon=True).start()
        return listener.getsockname()[1]

    def close(self) -> None:
        for sock in self._forwards:
            sock.close()
        self._forwards = []
        self.stop_all()
        if self._inside is not None:
            self._inside.shutdown(wait=True, cancel_futures=True)
            self._inside = None


def _stop(procs: Iterable[subprocess.Popen], timeout: float) -> list[int]:
    """SIGTERM to every one still running at once, then SIGKILL to those not gone within ``timeout``."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return [p.returncode for p in procs]


class Network:
    """Hosts named ``names`` (letters or short words: interface names are at most 15 characters)
    on one switch. Built at construction; :meth:`close` (or leaving the ``with``) undoes all of it.
    Skips the test (``pytest.skip``, with ip's own words) where a namespace cannot be made: not
    root, no CAP_SYS_ADMIN, no ``ip``."""

    def __init__(self, tmp: Path, names: Sequence[str]) -> None:
        self.tmp = tmp
        run = next(_runs)
        self.tag = f"{os.getpid() % 100000}{run}"  # unique among runs side by side, and within one
        self.subnet = 1 + (os.getpid() * 7 + run) % 250
        self.prefix = "cw-"
        self.switch = f"cw{self.tag}sw"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._lock = threading.Lock()
        for n in names:
            if not n.isalnum() or len(f"v{self.tag}{n}") > 15:
                raise ValueError(f"host name {n!r}: letters and digits, short enough for an interface name")
        try:
            probe = _ip("netns", "add", self.switch, check=False)
        except FileNotFoundError:
            pytest.skip("no `ip` command (iproute2) here: the multi-host tests need network namespaces")
        if probe.returncode != 0:
            pytest.skip(f"cannot make network namespaces here (root and CAP_SYS_ADMIN needed): "
                        f"{probe.stderr.strip() or probe.returncode}")
        self._namespaces.append(self.switch)
        try:
            self._build(names)
        except BaseException:
            self.close()
            raise

    def _build(self, names: Sequence[str]) -> None:
        sw = self.switch
        _ip("-n", sw, "link", "set", "lo", "up")
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")  # no STP: a port forwards as soon as it is up
        _ip("-n", sw, "link", "set", "br0", "up")
        for index, name in enumerate(names, start=1):
            host = self.hosts[name] = Host(self, name, index)
            host.dir.mkdir(parents=True, exist_ok=True)
            _ip("netns", "add", host.ns)
            self._namespaces.append(host.ns)
            _ip("-n", sw, "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
            _ip("-n", sw, "link", "set", host.veth, "master", "br0", "up")
            _ip("-n", host.ns, "link", "set", "lo", "up")
            _ip("-n", host.ns, "addr", "add", f"{host.addr}/24", "dev", "eth0")
            _ip("-n", host.ns, "link", "set", "eth0", "up")
        # one process through the whole chain (namespace, hostname, hidden folders) before any test
        # relies on it: where a container refuses a step, the test skips with the reason
        first = next(iter(self.hosts.values()))
        done = first.run("hostname", timeout=30)
        if done.returncode != 0 or done.stdout.strip() != first.hostname:
            pytest.skip(f"cannot run a process as a host here (unshare, hostname or mount refused): "
                        f"{(done.stderr or done.stdout).strip()[-500:]}")

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the links -------------------------------------------------------------------------------

    def cut(self, name: str) -> None:
        """Pull ``name``'s cable at the switch: nothing reaches it or leaves it (packets are lost,
        no connection is reset) until :meth:`restore`."""
        _ip("-n", self.switch, "link", "set", self.hosts[name].veth, "down")

    def restore(self, name: str) -> None:
        _ip("-n", self.switch, "link", "set", self.hosts[name].veth, "up")

    def link_up(self, name: str) -> bool:
        out = _ip("-n", self.switch, "-j", "link", "show", self.hosts[name].veth).stdout
        return "UP" in json.loads(out)[0].get("flags", [])

    # -- the end ---------------------------------------------------------------------------------

    def stop_all(self, timeout: float = STOP_GRACE_S) -> None:
        """SIGTERM to every process on every host at once, then SIGKILL to the late ones."""
        _stop([p for h in self.hosts.values() for p in h.procs.values()], timeout)

    def close(self) -> None:
        """Every process stopped, every thread in a namespace ended, every namespace deleted (its
        veth and the bridge with it). Safe to call twice, and after a half-built network."""
        with self._lock:
            try:
                self.stop_all()
            finally:
                for host in self.hosts.values():
                    host.close()
                for ns in reversed(self._namespaces):
                    _ip("netns", "del", ns, check=False)
                self._namespaces.clear()

    def leftovers(self) -> list[str]:
        """The namespaces of this network that still exist (none after :meth:`close`)."""
        listed = _ip("netns", "list", check=False).stdout.split()
        return [ns for ns in [self.switch, *(h.ns for h in self.hosts.values())] if ns in listed]
