"""What ``camwire web`` costs in CPU with 4 cameras and 0, 1 and 10 viewers of the live grid.

One real ``camwire run`` (``--detector covered --workers 1 --web PORT``, ``--fps 5`` towards the
pool) with N cameras, each the same generated 1280x720 25 fps H.264 clip read in real time
(``--realtime``, as a camera would be), long enough for every phase. Its ``camwire web`` child is
found in /proc, and in phases side by side in that one run:

- 0 viewers: nobody on ``/api/live``;
- 1 viewer: one WebSocket watching every camera as the page's grid does (``{"watch": {CAM:
  {"width": 320, "fps": 5}, ...}}``);
- 10 viewers: ten such WebSockets, each reading as fast as frames come.

Each phase waits until every viewer has had a frame of every camera, lets ``--settle`` seconds
pass, then measures ``--seconds``: the web process's CPU seconds (utime + stime of
/proc/PID/stat) per wall second, the extractors' and the whole run's beside it, the frames each
viewer received (asserted > 0: a broken live view fails the bench), and the live hub's counters
from ``GET /api/system`` (``web.live``: frames_in, encodes, sent) before and after, so the
encodes show how many JPEGs ten viewers cost against one. The viewers run in this process on the
same machine, so they load it too; only the camwire processes are measured.

Then (unless ``--no-baseline``) the same run without ``--web``, measured the same way: what the
extractors cost when they publish nothing, against the 0-viewer phase.

Run: ``.venv/bin/python bench/web.py [--cameras 4] [--viewers 0 1 10] [--seconds S] [--rounds R]
[--size 1280x720] [--no-baseline] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camwire.sample import make_sample_clip  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 180.0  # imports of every daemon on a loaded 2-core machine, cameras online
FIRST_FRAME_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
STARTUP_MARGIN_S = 60.0  # clip seconds played before the first phase begins, at most
PHASE_MARGIN_S = 5.0  # per phase: connecting, the first frame of every camera


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(parent: int) -> dict[int, list[str]]:
    """pid -> argv of every process whose parent is ``parent``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue  # gone meanwhile
        if int(stat[stat.rindex(")") + 2:].split()[1]) == parent:
            found[int(entry.name)] = argv
    return found


def daemon_of(argv: list[str]) -> str | None:
    """``python -m camwire web ...`` -> ``web``."""
    if "camwire" in argv and argv.index("camwire") + 1 < len(argv):
        return argv[argv.index("camwire") + 1]
    return None


@dataclass
class Phase:
    """One phase's measurements; ``viewers`` None: the run without ``--web``."""

    round: int
    viewers: int | None
    wall_s: float = 0.0
    web_cpu_s: float | None = None
    extractors_cpu_s: float = 0.0
    all_cpu_s: float = 0.0  # every child of camwire run
    live: dict[str, int] = field(default_factory=dict)  # web.live counters gained in the phase
    frames: list[int] = field(default_factory=list)  # per viewer, within the window
    loadavg: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def web_pct(self) -> float | None:
        return None if self.web_cpu_s is None else 100 * self.web_cpu_s / self.wall_s

    def row(self, one_viewer_web_pct: float | None) -> dict[str, Any]:
        pct = self.web_pct()
        fps = [n / self.wall_s for n in self.frames]
        return {"round": self.round, "viewers": "no --web" if self.viewers is None else self.viewers,
                "web_cpu_pct": None if pct is None else round(pct, 1),
                "ratio_to_1": round(pct / one_viewer_web_pct, 2) if pct is not None and one_viewer_web_pct else None,
                "frames_per_s_per_viewer": round(sum(fps) / len(fps), 1) if fps else None,
                "frames_per_s_min": round(min(fps), 1) if fps else None,
                "frames_in": self.live.get("frames_in"), "encodes": self.live.get("encodes"),
                "sent": self.live.get("sent"), "skipped_slow": self.live.get("skipped_slow"),
                "extractors_cpu_pct": round(100 * self.extractors_cpu_s / self.wall_s, 1),
                "all_cpu_pct": round(100 * self.all_cpu_s / self.wall_s, 1),
                "wall_s": round(self.wall_s, 1), "loadavg": [round(x, 2) for x in self.loadavg]}


class Viewer:
    """One WebSocket on /api/live, watching every camera; counts the frames it is sent."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.by_camera: Counter[str] = Counter()

    @property
    def frames(self) -> int:
        return sum(self.by_camera.values())

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                raise RuntimeError(f"live view sent {msg.type.name}: {msg.data!r}")
            n = struct.unpack(">I", msg.data[:4])[0]
            meta = json.loads(msg.data[4:4 + n])
            if msg.data[4 + n:4 + n + 2] != b"\xff\xd8":
                raise RuntimeError(f"live view of {meta.get('camera')}: not a JPEG")
            self.by_camera[meta["camera"]] += 1


class Run:
    """One ``camwire run`` of the bench's cameras, with or without ``--web``: its processes."""

    def __init__(self, clip: Path, cameras: list[str], work: Path, pool_fps: float, web_port: int | None) -> None:
        self.cameras = cameras
        self.db = work / "data" / "status.db"
        argv = [sys.executable, "-m", "camwire", "run", *[a for c in cameras for a in ("--camera", f"{c}={clip}")],
                "--detector", "covered", "--workers", "1", "--fps", str(pool_fps), "--realtime",
                "--data-dir", str(work / "data"), "--events", str(work / "events.jsonl")]
        if web_port is not None:
            argv += ["--web", str(web_port)]
        work.mkdir(parents=True)
        self.log = work / "run.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "CAMWIRE_LOG_FORMAT": "json"},
                                         stdout=log, stderr=subprocess.STDOUT)
        self.web_pid: int | None = None
        self.extractor_pids: list[int] = []

    def wait_online(self) -> None:
        """Until the sink's status.db has every camera online, then find the run's children."""
        deadline = time.monotonic() + START_TIMEOUT_S
        states: dict[str, str] = {}
        while not all(states.get(c) == "online" for c in self.cameras):
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"cameras not online within {START_TIMEOUT_S:.0f}s: {states}")
            time.sleep(0.5)  # a file has no event to await
            if self.db.exists():
                try:
                    with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as con:
                        states = dict(con.execute("SELECT camera, state FROM cameras"))
                except sqlite3.OperationalError:  # the sink is creating it
                    states = {}
        kids = children(self.proc.pid)
        webs = [pid for pid, argv in kids.items() if daemon_of(argv) == "web"]
        if len(webs) > 1:
            raise RuntimeError(f"more than one camwire web child of {self.proc.pid}: {webs}")
        self.web_pid = webs[0] if webs else None
        self.extractor_pids = [pid for pid, argv in kids.items() if daemon_of(argv) == "extractor"]
        if len(self.extractor_pids) != len(self.cameras):
            raise RuntimeError(f"expected {len(self.cameras)} extractors, found {self.extractor_pids}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"camwire run exited ({self.proc.returncode}); its log: {self.log}")

    def cpu(self) -> tuple[float | None, float, float]:
        """(web, extractors, every child of the run) CPU seconds so far."""
        web = cpu_s(self.web_pid) if self.web_pid else None
        ext = sum(cpu_s(p) for p in self.extractor_pids)
        return web, ext, sum(cpu_s(p) for p in children(self.proc.pid))

    def stop(self) -> None:
        """SIGTERM (camwire run stops its children in order), SIGKILL if it will not."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Console:
    """The run's ``camwire web``, over HTTP and the live WebSocket."""

    def __init__(self, run: Run, session: aiohttp.ClientSession, port: int, width: int, fps: float) -> None:
        self.run = run
        self.session = session
        self.base = f"http://127.0.0.1:{port}"
        self.watch = {"watch": {c: {"width": width, "fps": fps} for c in run.cameras}}

    async def wait_up(self) -> None:
        """Until the console answers /api/cameras with every camera."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            self.run.check_alive()
            try:
                async with self.session.get(f"{self.base}/api/cameras") as r:
                    names = {c["camera"] for c in (await r.json())["cameras"]} if r.status == 200 else set()
            except aiohttp.ClientError:  # not listening yet
                names = set()
            if names >= set(self.run.cameras):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the console did not list every camera within {START_TIMEOUT_S:.0f}s")
            await asyncio.sleep(0.5)  # polling a server; it has no event to await

    async def live_counters(self) -> dict[str, int]:
        async with self.session.get(f"{self.base}/api/system") as r:
            r.raise_for_status()
            return (await r.json())["web"]["live"]

    async def phase(self, rnd: int, n: int, settle: float, seconds: float) -> Phase:
        viewers = [Viewer(await self.session.ws_connect(f"{self.base}/api/live", max_msg_size=0)) for _ in range(n)]
        readers: list[asyncio.Task] = []
        try:
            for v in viewers:
                await v.ws.send_str(json.dumps(self.watch))
                readers.append(asyncio.create_task(v.read()))
            deadline = time.monotonic() + FIRST_FRAME_TIMEOUT_S
            while not all(v.by_camera.keys() >= set(self.run.cameras) for v in viewers):
                check(readers)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no frame of every camera within {FIRST_FRAME_TIMEOUT_S:.0f}s: "
                                       f"{[dict(v.by_camera) for v in viewers]}")
                await asyncio.sleep(0.1)  # polling counters the readers fill
            await asyncio.sleep(settle)  # the bench's clock: let start-up work (subscribing, first frames) pass
            live0 = await self.live_counters()
            frames0 = [v.frames for v in viewers]
            cpu0, t0 = self.run.cpu(), time.monotonic()
            await asyncio.sleep(seconds)  # the measured window
            cpu1, t1 = self.run.cpu(), time.monotonic()
            frames1 = [v.frames for v in viewers]
            live1 = await self.live_counters()
            check(readers)
        finally:
            for v in viewers:
                await v.ws.close()
            for t in readers:
                t.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        p = Phase(rnd, n, wall_s=t1 - t0, web_cpu_s=cpu1[0] - cpu0[0], extractors_cpu_s=cpu1[1] - cpu0[1],
                  all_cpu_s=cpu1[2] - cpu0[2], live={k: live1[k] - live0.get(k, 0) for k in live1},
                  frames=[b - a for a, b in zip(frames0, frames1)], loadavg=os.getloadavg())
        if n and min(p.frames) <= 0:
            raise RuntimeError(f"{n} viewers: a viewer received no frame in {seconds:.0f}s: {p.frames}")
        return p


def check(readers: list[asyncio.Task]) -> None:
    """Raise what a viewer's reader met, or that it ended: a live view must stream to the end."""
    for t in readers:
        if t.done():
            t.result()
            raise RuntimeError("a live view closed before the phase ended")


def say(p: Phase) -> None:
    web = "no --web" if p.viewers is None else f"{p.viewers} viewers: web {p.web_pct():.1f}%"
    print(f"# round {p.round}, {web}, extractors {100 * p.extractors_cpu_s / p.wall_s:.1f}%, "
          f"load average {tuple(round(x, 2) for x in p.loadavg)}", flush=True)


async def with_web(run: Run, port: int, args: argparse.Namespace) -> list[Phase]:
    """Every round of every viewer count, in this one run."""
    async with aiohttp.ClientSession() as session:
        console = Console(run, session, port, args.width, args.view_fps)
        await console.wait_up()
        phases = []
        for rnd in range(1, args.rounds + 1):
            for n in args.viewers:
                p = await console.phase(rnd, n, args.settle, args.seconds)
                run.check_alive()
                say(p)
                phases.append(p)
    if run.web_pid is None or not Path(f"/proc/{run.web_pid}").exists():
        raise RuntimeError("camwire web was not there to the end (restarted?): the figures would mix processes")
    return phases


def without_web(run: Run, settle: float, seconds: float) -> Phase:
    time.sleep(settle)  # the bench's clock, as in a phase with the console
    cpu0, t0 = run.cpu(), time.monotonic()
    time.sleep(seconds)  # the measured window
    cpu1, t1 = run.cpu(), time.monotonic()
    run.check_alive()
    p = Phase(0, None, wall_s=t1 - t0, extractors_cpu_s=cpu1[1] - cpu0[1], all_cpu_s=cpu1[2] - cpu0[2],
              loadavg=os.getloadavg())
    say(p)
    return p


def table(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any, unit: str = "") -> str:
        return "-" if value is None else f"{value}{unit}"

    lines = ["| round | viewers | web CPU (% of a core) | / 1 viewer | frames/s per viewer (min) "
             "| hub frames in | encodes | sent | extractors CPU | whole run CPU | load avg |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        fps = "-" if r["frames_per_s_per_viewer"] is None else \
            f"{r['frames_per_s_per_viewer']} ({r['frames_per_s_min']})"
        lines.append(f"| {r['round'] or '-'} | {r['viewers']} | {cell(r['web_cpu_pct'], '%')} "
                     f"| {cell(r['ratio_to_1'], 'x')} | {fps} | {cell(r['frames_in'])} | {cell(r['encodes'])} "
                     f"| {cell(r['sent'])} | {r['extractors_cpu_pct']}% | {r['all_cpu_pct']}% "
                     f"| {' '.join(str(x) for x in r['loadavg'])} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--cameras", type=int, default=4, help="cameras in the run (default 4)")
    ap.add_argument("--viewers", type=int, nargs="+", default=[0, 1, 10], help="viewers per phase (default 0 1 10)")
    ap.add_argument("--seconds", type=float, default=15.0, help="measured seconds per phase (default 15)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds let pass before each window (default 3)")
    ap.add_argument("--rounds", type=int, default=1, help="times the whole set of phases is repeated (default 1)")
    ap.add_argument("--size", default="1280x720", help="the clip's WIDTHxHEIGHT (default 1280x720)")
    ap.add_argument("--clip-fps", type=int, default=25, help="the clip's frame rate (default 25)")
    ap.add_argument("--pool-fps", type=float, default=5.0, help="camwire run --fps: frames a second to the detector")
    ap.add_argument("--width", type=int, default=320, help="each viewer's width per camera (the grid's: 320)")
    ap.add_argument("--view-fps", type=float, default=5.0, help="each viewer's fps per camera (the grid's: 5)")
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                    help="then measure the same run without --web (default: yes)")
    ap.add_argument("--out", help="write the results as JSON here too")
    args = ap.parse_args()
    width, height = (int(x) for x in args.size.lower().split("x"))
    clip_s = STARTUP_MARGIN_S + args.rounds * len(args.viewers) * (args.settle + args.seconds + PHASE_MARGIN_S)
    cameras = [f"cam{i}" for i in range(args.cameras)]
    command = " ".join([".venv/bin/python", "bench/web.py", *sys.argv[1:]])
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "command": command, "cameras": args.cameras, "size": args.size, "clip_fps": args.clip_fps,
        "pool_fps": args.pool_fps, "watch": {"width": args.width, "fps": args.view_fps},
        "seconds": args.seconds, "settle": args.settle, "loadavg_start": os.getloadavg()}
    print(f"# {results['machine']}; {command}", flush=True)
    print(f"# {args.cameras} cameras {args.size} {args.clip_fps} fps (--realtime, --fps {args.pool_fps} to the pool), "
          f"viewers watch each at width {args.width}, {args.view_fps} fps; "
          f"load average {tuple(round(x, 2) for x in os.getloadavg())}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="camwire-bench-web-"))
    run = None
    phases: list[Phase] = []
    try:
        clip = work / "cam.mp4"
        t = time.monotonic()
        make_sample_clip(clip, seconds=clip_s, fps=args.clip_fps, width=width, height=height)
        print(f"# clip of {clip_s:.0f}s made in {time.monotonic() - t:.0f}s", flush=True)
        port = free_port()
        run = Run(clip, cameras, work / "web", args.pool_fps, port)
        run.wait_online()
        phases += asyncio.run(with_web(run, port, args))
        run.stop()
        if args.baseline:
            run = Run(clip, cameras, work / "no-web", args.pool_fps, None)
            run.wait_online()
            phases.append(without_web(run, args.settle, args.seconds))
            run.stop()
    except BaseException:
        if run is not None and run.log.exists():
            print("# camwire run's log, last lines:", *run.log.read_text().splitlines()[-20:], sep="\n",
                  file=sys.stderr)
        raise
    finally:
        if run is not None:
            run.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for p in phases:
        one = next((q for q in phases if q.round == p.round and q.viewers == 1), None)
        rows.append(p.row(one.web_pct() if one else None))
    results["phases"] = rows
    results["loadavg_end"] = os.getloadavg()
    print(table(rows), flush=True)
    print(f"# load average at the end {tuple(round(x, 2) for x in os.getloadavg())}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
