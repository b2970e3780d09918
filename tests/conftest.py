"""Fixtures: real daemons as separate processes on loopback, generated clips, the shared samples."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families
from zmq.utils.monitor import recv_monitor_message

from camwire.sample import make_sample_clip
from mqtt import run_broker
from processes import free_port  # noqa: F401 (the tests import it from here)
import leaks
import msgspec

from camwire.common import shm, wire

ROOT = Path(__file__).resolve().parent.parent
SHARED_MEDIA = ROOT.parent / "shared" / "media"
SHARED_MODELS = ROOT.parent / "shared" / "models"


def tcp() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def bound(ctx: zmq.Context, kind: int) -> tuple[zmq.Socket, str]:
    """A socket of ``kind`` bound on a loopback address of its own (linger 0), and the address:
    a test standing in for a daemon's peer (a worker's ventilator and sink)."""
    addr = tcp()
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(addr)
    return sock, addr


class Pull:
    """A PULL socket bound on loopback: an extractor's ``--push`` peer. Every message is kept,
    and awaited with a deadline."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.addr = tcp()
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(self.addr)
        self.seen: list[wire.Message] = []
        self.last_frame: list[bytes] | None = None  # the newest frame's parts, pixels and all
        self.rings: shm.Readers | None = None

    def until(self, predicate: Callable[[wire.Message], bool], timeout: float = 60.0, since: int = 0) -> wire.Message:
        """The first message from index ``since`` on that matches; waits for it with a timeout."""
        for msg in self.seen[since:]:
            if predicate(msg):
                return msg
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000)):
                break
            parts = self.sock.recv_multipart()
            msg = wire.peek_frame(parts) if len(parts) == 2 else wire.unpack(parts[0])
            if len(parts) == 2:
                self.last_frame = self._inline(msg, parts)
            self.seen.append(msg)
            if predicate(msg):
                return msg
        raise AssertionError(f"nothing matching within {timeout}s; saw {[type(m).__name__ for m in self.seen][-20:]}")

    def _inline(self, header: wire.FrameHeader, parts: list[bytes]) -> list[bytes]:
        """A frame whose pixels wait in its extractor's ring (common.shm): copied out and the slot
        given back, as the ventilator and a worker would, so a file's extractor never waits on us."""
        if header.shm is None:
            return parts
        if self.rings is None:
            self.rings = shm.Readers()
        pixels = bytes(self.rings.view(header.shm, header.raw_size))
        self.rings.release(header.shm)
        return wire.frame_parts(msgspec.structs.replace(header, shm=None), pixels)

    def frames(self, camera: str) -> list[wire.FrameHeader]:
        return [m for m in self.seen if isinstance(m, wire.FrameHeader) and m.camera == camera]

    def statuses(self) -> list[wire.Status]:
        return [m for m in self.seen if isinstance(m, wire.Status)]

    def seqs(self) -> list[int]:
        return [m.seq for m in self.seen if isinstance(m, wire.FrameHeader)]


def shared_clip(name: str) -> Path:
    path = SHARED_MEDIA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared sample clips are not part of the project)")
    return path


def shared_model(name: str) -> Path:
    """A pretrained model from ../shared/models (its README says what each one is)."""
    path = SHARED_MODELS / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared models are not part of the project)")
    return path


@pytest.fixture(scope="session")
def sample_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s at 25 fps, 640x360: moving shapes, and the lens covered from 5 s to 8 s."""
    path = tmp_path_factory.mktemp("clips") / "sample.mp4"
    make_sample_clip(path)
    return path


class Daemons:
    """Starts ``camwire`` daemons as child processes; every one is stopped at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *argv: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")
        env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "camwire", *argv, "--stats", str(self.stats_path(name))],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.procs[name] = proc
        return proc

    def stats_path(self, name: str) -> Path:
        return self.tmp / f"{name}.stats.json"

    def stats(self, name: str) -> dict[str, Any]:
        return json.loads(self.stats_path(name).read_text())

    def wait(self, name: str, timeout: float = 60.0) -> int:
        return self.procs[name].wait(timeout=timeout)

    def stop(self, name: str, timeout: float = 15.0) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def stop_all(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def daemons(tmp_path: Path):
    d = Daemons(tmp_path)
    yield d
    d.stop_all()


class EventStream:
    """A SUB socket on the sink's ``--publish``: events are awaited with a timeout, never slept for."""

    def __init__(self, ctx: zmq.Context, addr: str) -> None:
        self.sock = subscribe(ctx, addr)
        self.seen: list[dict[str, Any]] = []

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0,
                 since: int = 0) -> dict[str, Any]:
        """The first event matching ``predicate`` among those received from index ``since`` on."""
        for event in self.seen[since:]:
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self.sock.poll(int(left * 1000)):
                event = msgspec.msgpack.decode(self.sock.recv())  # as sent, every key kept
                self.seen.append(event)
                if predicate(event):
                    return event
        raise AssertionError(f"no matching event within {timeout}s; saw {[e['type'] for e in self.seen]}")

    def wait_type(self, etype: str, timeout: float = 60.0, since: int = 0) -> dict[str, Any]:
        return self.wait_for(lambda e: e["type"] == etype, timeout, since)


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def cameras_for(sinks: list[str], per_sink: int) -> list[str]:
    """Camera names (``cam0``, ``cam1``, ...) of which each of ``sinks`` owns ``per_sink``, by the
    workers' rule (common.rendezvous). The sinks' addresses are a test's own (a port, a tmp path),
    so which names fall where is found, never assumed: six fixed names all fell to one of two
    sinks once in about thirty runs."""
    from camwire.common.rendezvous import owner

    chosen: dict[str, list[str]] = {s: [] for s in sinks}
    i = 0
    while any(len(names) < per_sink for names in chosen.values()):
        mine = chosen[owner(f"cam{i}", sinks)]
        if len(mine) < per_sink:
            mine.append(f"cam{i}")
        i += 1
    return [c for names in chosen.values() for c in names]


SHAPES_RULES = ROOT / "tests" / "pipeline" / "shapes_rules.toml"  # every label tracked: the shapes are no people


class Pipeline:
    """Addresses for one ventilator + sink on TCP loopback, and the commands to start the rest.
    A sink given no ``--config`` or ``--rules`` tracks every label (SHAPES_RULES)."""

    def __init__(self, daemons: Daemons, zctx: zmq.Context, tmp: Path,
                 until: str | None = None, heartbeat_timeout: float = 2.0, sink_args: tuple[str, ...] = (),
                 vent_args: tuple[str, ...] = ()) -> None:
        self.d = daemons
        self.frontend, self.backend, self.results, self.events_pub = tcp(), tcp(), tcp(), tcp()
        self.events_file = tmp / "events.jsonl"
        self.data_dir = tmp / "data"
        sink = ["sink", "--bind", self.results, "--events", str(self.events_file), "--publish", self.events_pub,
                "--data-dir", str(self.data_dir)]
        if until:
            sink += ["--exit-when-drained", until]
        if "--config" not in sink_args and "--rules" not in sink_args:
            sink += ["--rules", str(SHAPES_RULES)]
        daemons.start("sink", *sink, *sink_args)
        self.events = EventStream(zctx, self.events_pub)
        daemons.start("ventilator", "ventilator", "--frontend", self.frontend, "--backend", self.backend,
                      "--heartbeat-timeout", str(heartbeat_timeout), *vent_args)

    def worker(self, name: str, detector: str = "covered", *extra: str) -> subprocess.Popen:
        return self.d.start(name, "classifier", "--connect", self.backend, "--sink", self.results,
                            "--detector", detector, "--name", name, *extra)

    def extractor(self, camera: str, *sources: str, extra: tuple[str, ...] = ()) -> subprocess.Popen:
        argv = ["extractor", "--camera", camera, "--push", self.frontend]
        for s in sources:
            argv += ["--source", s]
        return self.d.start(f"extractor-{camera}", *argv, *extra)

    def events_written(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.events_file.read_text().splitlines()]


@pytest.fixture
def pipeline_factory(daemons: Daemons, zctx: zmq.Context, tmp_path: Path):
    return lambda **kw: Pipeline(daemons, zctx, tmp_path, **kw)


def subscribe(ctx: zmq.Context, addr: str) -> zmq.Socket:
    """A SUB socket on ``addr``, returned once its subscription has reached the publisher.

    PUB/SUB's slow joiner: the handshake is awaited (the subscription goes out with it), so the
    first message published after this returns is not missed."""
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    sock.connect(addr)
    assert monitor.poll(30_000), f"could not connect to {addr}"
    assert recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
    sock.disable_monitor()
    monitor.close()
    return sock


class FrameTap:
    """Every frame or packet an extractor publishes (``--publish``), as (camera, seq, t): ``t`` is
    the decode time of a packet (in stream order, unlike its pts), the pts of a frame."""

    def __init__(self, ctx: zmq.Context, addr: str) -> None:
        self.sock = subscribe(ctx, addr)
        self.seen: list[tuple[str, int, float | None]] = []
        self.controls: list[dict[str, Any]] = []

    def until(self, predicate: Callable[["FrameTap"], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000)):
                raise AssertionError(f"not seen within {timeout}s; cameras so far: {self.counts()}")
            parts = self.sock.recv_multipart()
            head = msgspec.msgpack.decode(parts[0])
            if head["kind"] == "frame":
                h = wire.peek_frame(parts)
                self.seen.append((h.camera, h.seq, h.dts if h.dts is not None else h.pts))
            else:
                self.controls.append(head)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for camera, _, _ in self.seen:
            out[camera] = out.get(camera, 0) + 1
        return out

    def of(self, camera: str, since: int = 0) -> list[tuple[int, float | None]]:
        return [(seq, pts) for cam, seq, pts in self.seen[since:] if cam == camera]


def wait_log(path: Path, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0,
             proc: subprocess.Popen | None = None) -> dict[str, Any]:
    """The first JSON log record in ``path`` matching ``predicate``; the file is read as it grows."""
    deadline = time.monotonic() + timeout
    offset, buf = 0, ""
    while time.monotonic() < deadline:
        with open(path, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            buf += f.read()
            offset = f.tell()
        *lines, buf = buf.split("\n")
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and predicate(rec):
                return rec
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{path.name}: the process exited ({proc.returncode}) before the log line")
        time.sleep(0.05)  # a file has no event to await: poll it, briefly
    raise AssertionError(f"no matching log line in {path} within {timeout}s")


@pytest.fixture
def broker():
    """A real Mosquitto on a free port; yields the port (skips where Mosquitto is not installed)."""
    yield from run_broker()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A factory of small tmpfs volumes (``small_disk("3m")``), unmounted at teardown; skips with
    the reason where mounting is refused (not root, no CAP_SYS_ADMIN)."""
    mounts: list[Path] = []

    def make(size: str = "3m") -> Path:
        path = tmp_path / f"disk{len(mounts)}"
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
        mounts.append(path)
        return path

    yield make
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path, leave: int = 0) -> Path:
    """Fill the volume holding ``path`` until ``leave`` bytes or fewer are free; returns the filler
    file (delete it to give the space back)."""
    filler = path / "filler.bin"
    with open(filler, "ab") as f:
        while True:
            free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
            if free <= leave:
                break
            try:
                f.write(b"\0" * min(1 << 20, max(4096, free - leave)))
                f.flush()
            except OSError:
                break
    return filler


def scrape(port: int) -> dict[str, list]:
    """``{family name: [(labels, value)]}`` from ``http://127.0.0.1:port/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(metrics: dict[str, list], name: str, **labels: str) -> float:
    return sum(v for got, v in metrics.get(name, []) if all(got.get(k) == x for k, x in labels.items()))


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_RUN_MARK] = leaks.mark_run()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite fails if anything it started is still running once every fixture has stopped."""
    left = leaks.survivors(session.config.stash[_RUN_MARK])
    if left:
        leaks.kill([pid for pid, _ in left])
        lines = "\n".join(f"  {pid} {cmd[:200]}" for pid, cmd in left)
        print(f"\nprocesses started by the tests outlived them (killed now):\n{lines}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_RUN_MARK = pytest.StashKey[str]()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's chromium (console.CHROMIUM) through Playwright; skipped where either is missing."""
    from console import CHROMIUM

    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed: run `make debs`")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def wait_status(path: Path, camera: str, predicate: Callable[[dict[str, Any]], bool],
                timeout: float = 60.0) -> dict[str, Any]:
    """The camera's row in the sink's status.db once it matches (the sink rewrites it each second)."""
    import sqlite3

    from camwire.sink.store.status_db import read_status

    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        try:
            row = next((r for r in read_status(path)[0] if r["camera"] == camera), None)
        except sqlite3.Error:
            row = None  # not created yet
        if row is not None and predicate(row):
            return row
        time.sleep(0.1)  # SQLite has no change notification to await
    raise AssertionError(f"status of {camera} never matched; last: {row}")
