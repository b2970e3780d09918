"""CURVE between real daemons over TCP, started from camwire.toml as the units start them.

Every daemon here runs with the same ``[security]`` section: one host key pair, its public key
listed as the one allowed client and pinned as every server's key. The strangers use the same
addresses: a worker with a key nobody listed, an extractor with no key at all, and subscribers
that pin the wrong server key. None of them gets a frame or an event; every daemon goes on; each
refused handshake is counted.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from camwire.sample import make_sample_clip
from camwire.common.curve import read_keys
from conftest import ROOT, Daemons, free_port, scrape, tcp

SOCKETS = ("frontend", "backend", "results", "events", "frames")


def keygen(folder: Path, name: str) -> tuple[Path, Path]:
    done = subprocess.run([sys.executable, "-m", "camwire", "keygen", name, "--dir", str(folder)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return folder / f"{name}.key", folder / f"{name}.key_secret"


class Site:
    """A camwire.toml with CURVE on, its keys, and the daemons it starts."""

    def __init__(self, tmp: Path, daemons: Daemons, clip: Path, record: bool = False) -> None:
        self.tmp, self.d = tmp, daemons
        keys = tmp / "keys"
        self.host_public, self.host_secret = keygen(keys, "host")
        self.stranger_public, self.stranger_secret = keygen(keys, "stranger")
        self.clients, self.servers = keys / "clients", keys / "servers"
        self.clients.mkdir()
        self.servers.mkdir()
        shutil.copy(self.host_public, self.clients / "host.key")
        for server in ("ventilator", "sink", "extractor"):
            shutil.copy(self.host_public, self.servers / f"{server}.key")
        self.addr = {name: tcp() for name in SOCKETS}
        self.ports = {name: free_port() for name in ("ventilator", "sink", "classifier")}  # classifier: the newcomer's
        self.data = tmp / "data"
        self.config = tmp / "camwire.toml"
        sockets = "\n".join(f'{name} = "{addr}"' for name, addr in self.addr.items())
        self.config.write_text(f"""
[sockets]
{sockets}

[security]
key = "{self.host_secret}"
clients = "{self.clients}"
servers = "{self.servers}"

[ventilator]
metrics_port = {self.ports["ventilator"]}

[classifier]
detector = "covered"

[sink]
data_dir = "{self.data}"
events = "{tmp / 'events.jsonl'}"
metrics_port = {self.ports["sink"]}

[recorder]
dir = "{tmp / 'rec'}"
keep_types = "camera_covered"

[cameras.yard]
url = "{clip}"
realtime = true
record = {"true" if record else "false"}
""")

    def start(self, name: str, command: str, *extra: str) -> subprocess.Popen:
        return self.d.start(name, command, "--config", str(self.config), *extra)

    def handshakes_failed(self, daemon: str) -> dict[tuple[str, str], float]:
        """``{(address, reason): count}`` from a daemon's live metrics ({} while they are not up yet)."""
        try:
            family = scrape(self.ports[daemon]).get(f"camwire_{daemon}_handshakes_failed_total", [])
        except urllib.error.URLError:
            return {}
        return {(labels["socket"], labels["reason"]): value for labels, value in family}

    def wait_failed(self, daemon: str, socket: str, reason: str | None, more_than: float = 0,
                    timeout: float = 60.0) -> float:
        """Until ``daemon`` has counted a failed handshake on ``socket`` (for ``reason``, or any)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counted = self.handshakes_failed(daemon)
            count = sum(n for (addr, why), n in counted.items()
                        if addr == self.addr[socket] and reason in (None, why))
            if count > more_than:
                return count
            self.assert_running()
            time.sleep(0.2)  # a counter has no event to await: poll it
        raise AssertionError(f"{daemon}: no {reason} handshake failure on {socket}; "
                             f"counted {self.handshakes_failed(daemon)}")

    def assert_running(self) -> None:
        """Every daemon still up; a stranger extractor may have read its file to the end (exit 0)."""
        exited = {name: p.returncode for name, p in self.d.procs.items() if p.poll() is not None
                  and (name != "stranger-extractor" or p.returncode != 0)}
        assert not exited, f"daemons exited: {exited}"

    def refused(self) -> set[tuple[str, str]]:
        """(daemon, socket) of every refusal ``camwire status`` shows."""
        done = subprocess.run([sys.executable, "-m", "camwire", "status", "--config", str(self.config), "--json"],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        if done.returncode != 0:  # no status.db yet
            return set()
        return {(r["daemon"], r["socket"]) for r in json.loads(done.stdout)["refused"]}

    def worker_results(self, name: str) -> int:
        db = self.data / "status.db"
        if not db.exists():
            return 0
        with sqlite3.connect(db) as con:
            row = con.execute("SELECT results FROM workers WHERE name = ?", (name,)).fetchone()
        return row[0] or 0 if row else 0


def curve_sub(ctx: zmq.Context, addr: str, public: Path, secret: Path, server: Path) -> tuple[zmq.Socket,
                                                                                             zmq.Socket]:
    """A SUB with CURVE keys, and a monitor on its handshakes."""
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    pub, sec = read_keys(secret, secret=True)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, pub)
    sock.setsockopt(zmq.CURVE_SECRETKEY, sec)
    sock.setsockopt(zmq.CURVE_SERVERKEY, read_keys(server, secret=False)[0])
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    sock.connect(addr)
    return sock, monitor


def next_event(sock: zmq.Socket, want: Any, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000)):
            event = msgspec.msgpack.decode(sock.recv())
            if want(event):
                return event
    raise AssertionError("no such event")


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "yard.mp4"
    make_sample_clip(path, seconds=40, width=320, height=180, covered=(4.0, 8.0))
    return path


def test_strangers_get_nothing_through_and_break_nothing(tmp_path: Path, daemons: Daemons, zctx: zmq.Context,
                                                         clip: Path) -> None:
    site = Site(tmp_path, daemons, clip, record=True)
    site.start("sink", "sink")
    site.start("ventilator", "ventilator")
    site.start("recorder", "recorder")
    # the strangers first, so that any frame they could take, they would
    site.d.start("stranger-worker", "classifier", "--connect", site.addr["backend"], "--sink", site.addr["results"],
                 "--detector", "covered", "--name", "stranger", "--curve-key", str(site.stranger_secret),
                 "--curve-servers", str(site.servers))
    site.d.start("stranger-extractor", "extractor", "--camera", "intruder", "--source", str(clip),
                 "--push", site.addr["frontend"], "--realtime")  # no key at all
    wrong_events, wrong_events_mon = curve_sub(zctx, site.addr["events"], site.stranger_public,
                                               site.stranger_secret, site.stranger_public)  # the wrong server key
    wrong_frames, wrong_frames_mon = curve_sub(zctx, site.addr["frames"], site.stranger_public,
                                               site.stranger_secret, site.stranger_public)
    site.wait_failed("ventilator", "backend", "auth")  # a key nobody listed: the ZAP handler said no
    site.wait_failed("ventilator", "frontend", None)  # no CURVE at all (libzmq says protocol, or no detail)
    site.wait_failed("sink", "results", "auth")  # the stranger worker tried the sink too
    site.wait_failed("sink", "events", "protocol")  # a wrong server key cannot even say hello

    # the real camera and worker, and an allowed subscriber
    events, events_mon = curve_sub(zctx, site.addr["events"], site.host_public, site.host_secret,
                                   site.servers / "sink.key")
    assert events_mon.poll(30_000), "the allowed subscriber never completed its handshake"
    site.start("worker", "classifier", "--name", "worker")
    site.start("extractor", "extractor")
    covered = next_event(events, lambda e: e["type"] == "camera_covered" and e["camera"] == "yard", timeout=90)
    assert covered["worker"] == "worker"
    # the real clip went end to end: results at the sink, and the recorder wrote its segments
    assert site.worker_results("worker") > 0
    assert any((tmp_path / "rec" / "yard").glob("*.mkv"))
    site.assert_running()

    assert site.worker_results("stranger") == 0
    # the extractor's own refusals (the wrong-key subscriber on its frames) come with its heartbeats
    deadline = time.monotonic() + 60
    while ("extractor", site.addr["frames"]) not in site.refused():
        assert time.monotonic() < deadline, f"the extractor's refusals never reached status.db: {site.refused()}"
        time.sleep(0.2)
    assert not wrong_events_mon.poll(0) and not wrong_frames_mon.poll(0)  # never a handshake...
    assert not wrong_events.poll(0) and not wrong_frames.poll(0)  # ...so never a message
    for sock in (events, events_mon, wrong_events, wrong_events_mon, wrong_frames, wrong_frames_mon):
        sock.close(0)

    metrics = [urllib.request.urlopen(f"http://127.0.0.1:{site.ports[d]}/metrics", timeout=10).read().decode()
               for d in ("ventilator", "sink")]
    site.d.stop_all()
    stranger = site.d.stats("stranger-worker")
    assert stranger.get("results", {}) == {} and stranger.get("frames", {}) == {}
    failed = stranger["handshakes_failed"]
    assert failed[site.addr["backend"]]["auth"] >= 1 and failed[site.addr["results"]]["auth"] >= 1
    with sqlite3.connect(site.data / "status.db") as con:
        cameras = {row[0] for row in con.execute("SELECT camera FROM cameras")}
    assert cameras == {"yard"}  # the keyless extractor's camera never reached the sink
    # camwire status shows who was turned away, by which daemon, on which socket
    assert {("ventilator", site.addr["backend"]), ("ventilator", site.addr["frontend"]),
            ("sink", site.addr["events"]), ("extractor", site.addr["frames"])} <= site.refused()
    written = (tmp_path / "events.jsonl").read_text()
    assert '"intruder"' not in written and '"stranger"' not in written

    # no secret key anywhere a run writes: logs, stats, events, metrics
    secret = read_keys(site.host_secret, secret=True)[1].decode()
    for path in tmp_path.glob("*.log"):
        assert secret not in path.read_text(errors="replace"), path
    for path in tmp_path.glob("*.stats.json"):
        assert secret not in path.read_text(), path
    assert secret not in written
    assert not any(secret in text for text in metrics)


def test_a_key_added_lets_its_worker_in_and_removed_cuts_it_off(tmp_path: Path, daemons: Daemons,
                                                                clip: Path) -> None:
    site = Site(tmp_path, daemons, clip)
    site.start("sink", "sink")
    site.start("ventilator", "ventilator")
    site.start("extractor", "extractor")
    site.d.start("newcomer", "classifier", "--config", str(site.config), "--name", "newcomer",
                 "--curve-key", str(site.stranger_secret), "--metrics-port", str(site.ports["classifier"]))
    site.wait_failed("ventilator", "backend", "auth")
    assert site.worker_results("newcomer") == 0

    shutil.copy(site.stranger_public, site.clients / "newcomer.key")
    for name in ("ventilator", "sink"):
        site.d.procs[name].send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 90
    while site.worker_results("newcomer") == 0:  # its next handshake is let in: frames, then results
        assert time.monotonic() < deadline, "the newly listed worker never got a frame"
        site.assert_running()
        time.sleep(0.2)

    before = site.handshakes_failed("ventilator").get((site.addr["backend"], "auth"), 0)
    (site.clients / "newcomer.key").unlink()
    site.d.procs["ventilator"].send_signal(signal.SIGHUP)
    # cut off at once: its connection is closed and its handshake again refused
    site.wait_failed("ventilator", "backend", "auth", more_than=before)
    site.wait_failed("classifier", "backend", "auth", more_than=1)  # the newcomer's own count: refused again
    site.assert_running()
    site.d.stop_all()
    assert site.d.stats("ventilator")["reloads"]["applied"] >= 2


def test_a_key_file_others_may_read_is_refused_with_its_path(tmp_path: Path, daemons: Daemons, clip: Path) -> None:
    site = Site(tmp_path, daemons, clip)
    site.host_secret.chmod(0o644)
    for command in ("sink", "check-config"):
        done = subprocess.run([sys.executable, "-m", "camwire", command, *(["--config"] if command == "sink" else []),
                               str(site.config)], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 2, (command, done.stderr)
        assert str(site.host_secret) in done.stderr and "0644" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
