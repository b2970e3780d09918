"""``make demo``'s run (``python -m camwire.demo``): a clip through the whole pipeline with the
built-in model, told as it goes.

It writes its own camwire.toml into the output folder (the clip as a camera played at its own
pace, the built-in model, the recorder, the web console on port 8080 or a free one) and runs
``camwire run --config FILE --once`` on it. It says where the console is as soon as run does
(run's own "console at" line), one line per tracked object as the sink writes its start to the
events file, and at the end what is left: people seen, events, snapshots, kept clips, the
recording, and the command that serves them all in the console again (the same file). run's log
goes to ``run.log`` beside them; on a failure its error lines are shown. Ctrl-C (or SIGTERM)
stops the run, its daemons in order.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import av

from camwire.extractor.source import file_span
from camwire.recorder import catalog

CLIP = Path(__file__).resolve().parent / "media" / "people-walking-30s.mp4"
PORT = 8080  # the console's usual port, when it is free
FOLLOW_EVERY_S = 0.25  # how often the events file is read for new lines while the run goes on
CONSOLE_SAYS = "camwire: console at "  # camwire run's line (camwire.supervisor)
OLD_OUTPUTS = ("camwire.toml", "events.jsonl", "stats.json", "run.log", "status.db", "status.db-wal", "status.db-shm",
               "snapshots", "recordings", "web-cache")


def config_text(out: Path, clip: Path, port: int, workers: int) -> str:
    """The demo's camwire.toml: every path absolute, so ``camwire web --config`` serves the same
    results from anywhere."""
    return f"""\
# Written by make demo (camwire/demo.py): the demo's pipeline, and the console over its results:
#   camwire web --config {out / "camwire.toml"}

[classifier]
detector = "onnx"                       # the built-in model (YOLOX-Nano)

[sink]
events = {json.dumps(str(out / "events.jsonl"))}
data_dir = {json.dumps(str(out))}

[recorder]
dir = {json.dumps(str(out / "recordings"))}
segment = "4s"
pre = "2s"
post = "2s"
keep_types = "object"                   # a clip around each tracked object

[web]
port = {port}

[run]
workers = {workers}

[cameras.demo]
url = {json.dumps(str(clip))}
realtime = true                         # played at its own pace, as a camera would send it
"""


def free_port(preferred: int = PORT) -> int:
    """``preferred`` if nothing listens there now, else one the system has free."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port")


def new_lines(path: Path, offset: int) -> tuple[list[str], int]:
    """The whole lines written to ``path`` past ``offset``, and the offset after them."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    return data[:end].decode().splitlines(), offset + end


class Told:
    """What the demo says about the events as they come: a line per tracked object's start,
    numbered per label in the order seen."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.numbers: dict[str, int] = {}  # object_id -> its number
        self.per_label: dict[str, int] = {}

    def take(self, line: str) -> str | None:
        event = json.loads(line)
        self.events.append(event)
        if event.get("type") != "object" or event.get("phase") != "start" or event["object_id"] in self.numbers:
            return None
        label = event.get("label") or "object"
        n = self.numbers[event["object_id"]] = self.per_label[label] = self.per_label.get(label, 0) + 1
        score = f" (score {event['score']:.2f})" if event.get("score") is not None else ""
        return f"{time.strftime('%H:%M:%S', time.localtime(event['ts']))} {label} #{n} seen{score}"


def summary(out: Path, told: Told, wall_s: float) -> list[str]:
    """What the run left, in a few lines."""
    people = told.per_label.get("person", 0)
    others = {k: v for k, v in told.per_label.items() if k != "person"}
    snapshots = {e["snapshot"] for e in told.events if e.get("snapshot") and (out / e["snapshot"]).is_file()}
    recordings = out / "recordings"
    segments = catalog.segments(recordings, None, None, None)
    recorded_s = sum((s.end_ns - s.start_ns) / 1e9 for s in segments if s.end_ns is not None)
    kept = catalog.totals(recordings).kept_clips
    lines = [f"done in {wall_s:.0f} s: {people} {'person' if people == 1 else 'people'} seen"
             + "".join(f", {n} {label}" for label, n in sorted(others.items()))
             + f"; {len(told.events)} events, {len(snapshots)} snapshots, {kept} clips kept, "
             f"{recorded_s:.0f} s recorded in {len(segments)} files",
             f"  events:    {_shown(out / 'events.jsonl')}",
             f"  snapshots: {_shown(out / 'snapshots')}/",
             f"  recording: {_shown(recordings)}/ (the clips kept around each person under kept/)",
             f"  counters:  {_shown(out / 'stats.json')}   log: {_shown(out / 'run.log')}"]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camwire.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo-output", help="the folder for everything it writes")
    parser.add_argument("--clip", default=str(CLIP), help="the video played as the demo's camera")
    parser.add_argument("--port", type=int, help=f"the console's port (default: {PORT}, or a free one)")
    parser.add_argument("--workers", type=int, default=2, help="classifier processes")
    parser.add_argument("--browse", default="make demo-console",
                        help="the command the closing lines give for the console afterwards")
    args = parser.parse_args(argv)
    out, clip = Path(args.out).resolve(), Path(args.clip).resolve()
    try:
        with av.open(str(clip)) as container:
            length = file_span(container)
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        print(f"demo: cannot play {clip}: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for name in OLD_OUTPUTS:
        old = out / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    port = args.port or free_port()
    config = out / "camwire.toml"
    config.write_text(config_text(out, clip, port, args.workers))
    print(f"running the whole pipeline on {_shown(clip)} ({length:.0f} s, at its own pace) with the built-in "
          "model; tracked people as they come:", flush=True)
    told, started = Told(), time.monotonic()
    with (out / "run.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "camwire", "run", "--config", str(config), "--once",
                                 "--stats", str(out / "stats.json")], stdout=subprocess.PIPE, stderr=log, text=True)
        said: list[str] = []
        reader = threading.Thread(target=_relay, args=(proc, said), daemon=True)
        reader.start()
        signal.signal(signal.SIGTERM, _interrupt)
        offset = 0
        try:
            while True:
                running = proc.poll() is None
                lines, offset = new_lines(out / "events.jsonl", offset)
                for line in lines:
                    if (text := told.take(line)) is not None:
                        print(text, flush=True)
                if not running:
                    break
                try:
                    proc.wait(FOLLOW_EVERY_S)
                except subprocess.TimeoutExpired:
                    pass
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)  # run stops its children in order
            proc.wait()
            print("demo: stopped", file=sys.stderr)
            return 130
        reader.join()
    with (out / "run.log").open("a") as log:
        log.writelines(said)  # run's own summary
    if proc.returncode != 0:
        print(f"demo: the pipeline failed (exit {proc.returncode}); its log: {_shown(out / 'run.log')}; its errors:",
              file=sys.stderr)
        for line in errors((out / "run.log").read_text().splitlines()):
            print(f"  {line}", file=sys.stderr)
        return 1
    print()
    for line in summary(out, told, time.monotonic() - started):
        print(line)
    print(f"browse them in the console (events with snapshots and clips, the recording): {args.browse}")
    print(f"  (or: {_camwire()} web --config {_shown(config)}), then open http://127.0.0.1:{port}/", flush=True)
    return 0


def errors(log: list[str], most: int = 10) -> list[str]:
    """The error lines of run's log (a daemon's JSON record at level error, or a command's own
    ``camwire NAME: error: ...``), the last ``most``; its last lines when there are none."""
    found = []
    for line in log:
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("level") in ("error", "critical"):
                found.append(f"{record.get('daemon', '?')}: {record.get('event')}"
                             + "".join(f", {k}={v}" for k, v in record.items()
                                       if k not in ("daemon", "event", "level", "timestamp", "stats")))
        elif ": error: " in line or line.startswith("Traceback"):
            found.append(line)
    return found[-most:] or log[-most:]


def _relay(proc: subprocess.Popen, said: list[str]) -> None:
    """run's stdout: its "console at" line said at once, in the demo's words; the rest kept."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(CONSOLE_SAYS):
            url = line[len(CONSOLE_SAYS):].split()[0]
            print(f"console: {url}  (open it to watch the camera live and each person as they are tracked)",
                  flush=True)
        said.append(line)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _camwire() -> str:
    """How this environment's ``camwire`` command is called."""
    script = Path(sys.executable).parent / "camwire"
    return _shown(script) if script.is_file() else f"{_shown(Path(sys.executable))} -m camwire"


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
