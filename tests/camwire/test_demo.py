"""``make demo`` as a newcomer runs it, in a fresh copy of the project with the real clip
(camwire/media) and the built-in model: it says each step of its set-up in one line, where the
console is, each person as they are tracked, and a summary; then the console started as its
closing lines say serves those people's events with their snapshots and clips.

The copy is every file git tracks or would track (the working tree as it stands, uncommitted
work too), with their times, so make finds the suite's own environment (``VENV``) up to date and
never installs into it; the modules that environment installs are the project's own, the same
files. Every process is started in a session of its own and stopped, whole, by the fixture."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from camwire.demo import Told, errors, new_lines
from conftest import ROOT, free_port
from console import screenshot
from processes import OutputLines

VENV = Path(sys.executable).parent.parent
DEMO_TIMEOUT_S = 240
MAKE_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # a make of its own


def fresh_copy(dest: Path) -> Path:
    """The project as ``git clone`` of its working tree would give it: tracked and untracked
    files that are not ignored, times kept."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not there
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture
def sessions() -> Iterator[list[subprocess.Popen]]:
    """Processes started in sessions of their own; each session stopped whole at teardown."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def make(clone: Path, sessions: list[subprocess.Popen], *words: str) -> subprocess.Popen:
    proc = subprocess.Popen(["make", "--no-print-directory", *words, f"VENV={VENV}"], cwd=clone,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=MAKE_ENV)
    sessions.append(proc)
    return proc


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, response.read()


def test_make_demo_in_a_fresh_clone_tracks_people_and_its_console_serves_their_events(
        tmp_path: Path, sessions: list[subprocess.Popen], browser) -> None:
    clone = fresh_copy(tmp_path / "camwire")
    assert (clone / "camwire" / "media" / "people-walking-30s.mp4").is_file()
    if subprocess.run(["make", "-q", "venv", f"VENV={VENV}"], cwd=clone, env=MAKE_ENV).returncode != 0:
        # pyproject.toml changed since the suite's environment was made: never reinstall it from a copy
        pytest.fail(f"{VENV} is older than pyproject.toml: run make venv first")
    port = free_port()
    demo = make(clone, sessions, "demo", f"DEMO_PORT={port}")
    try:
        out, _ = demo.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"make demo took more than {DEMO_TIMEOUT_S}s")
    assert demo.returncode == 0, out[-4000:]
    lines = out.splitlines()
    # the set-up, one line a step, its output in the log
    assert lines[:2] == ["setting up the Python environment... done", "installing Debian packages... done"]
    assert (clone / "demo-output" / "setup.log").is_file()
    assert not [line for line in lines if re.search(r"\bpip\b|\bapt", line)]  # none of their output
    # the console's address in plain words, before any person
    console = [i for i, line in enumerate(lines) if line.startswith(f"console: http://127.0.0.1:{port}/")]
    people = [i for i, line in enumerate(lines) if re.fullmatch(r"\d\d:\d\d:\d\d person #\d+ seen \(score 0\.\d\d\)",
                                                                  line)]
    assert console and people and console[0] < people[0]
    assert len(people) >= 5  # pedestrians cross the square all through its 30 s
    assert [lines[i].split("#")[1].split()[0] for i in people] == [str(n) for n in range(1, len(people) + 1)]
    done = next(line for line in lines if line.startswith("done in "))
    counts = re.search(r": (\d+) people seen; (\d+) events, (\d+) snapshots, (\d+) clips kept, (\d+) s recorded "
                       r"in (\d+) files", done)
    assert counts, done
    seen, events, snapshots, kept, recorded_s, files = map(int, counts.groups())
    assert seen == len(people) and events > seen and snapshots >= seen and kept >= 1 and files >= 1
    assert 25 <= recorded_s <= 35  # the clip, recorded whole
    assert lines[-2].endswith("make demo-console")
    assert lines[-1].endswith(f"then open http://127.0.0.1:{port}/")
    written = [json.loads(line) for line in (clone / "demo-output" / "events.jsonl").read_text().splitlines()]
    assert len(written) == events
    assert sum(1 for e in written if e["type"] == "object" and e["phase"] == "start" and e["label"] == "person") == seen

    # afterwards, the console as the closing lines say, on the demo's own file
    console = make(clone, sessions, "demo-console")
    OutputLines(console.stdout).until("web console started", timeout=60)
    rows = indexed(f"http://127.0.0.1:{port}/api/events?type=object&limit=200", seen)
    assert len(rows) == seen and all(row["label"] == "person" for row in rows)  # one row per tracked person
    assert all(row["snapshot_url"] for row in rows)
    status, jpeg = get(f"http://127.0.0.1:{port}{rows[0]['snapshot_url']}")
    assert status == 200 and jpeg[:2] == b"\xff\xd8"
    with_clip = [row for row in rows if row["clip_url"]]
    assert with_clip
    status, mp4 = get(f"http://127.0.0.1:{port}{with_clip[0]['clip_url']}")
    assert status == 200 and mp4[4:8] == b"ftyp"
    status, body = get(f"http://127.0.0.1:{port}/api/recordings")
    ranges = json.loads(body)["cameras"]["demo"]["ranges"]
    assert status == 200 and sum(end - start for start, end in ranges) >= 25
    look_at_the_console(browser, f"http://127.0.0.1:{port}", ranges)


def indexed(url: str, n: int, timeout: float = 60.0) -> list[dict]:
    """The console's rows once it has read ``n`` (it reads the events file on a thread of its own,
    after its start is logged)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = get(url)
        assert status == 200
        rows = json.loads(body)["events"]
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)  # the index has no notification to await over HTTP


def look_at_the_console(browser, url: str, ranges: list[list[float]]) -> None:
    """What a newcomer sees next, in Chromium: the people as alerts on the review page with their
    pictures, one opened on its clip; the recording on the timeline with a still under the pointer.
    These are the README's pictures (`make screenshots`)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/#/review")
    alert = page.locator('.review-item[data-severity="alert"]').first
    alert.wait_for(timeout=30_000)
    page.wait_for_function("() => { const imgs = [...document.querySelectorAll('.review-item .objects img')];"
                           " return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0); }",
                           timeout=30_000)
    alert.click()
    page.wait_for_function("() => document.querySelector('video.review-clip')?.readyState >= 1", timeout=60_000)
    assert page.locator(".review-timeline .phase[data-phase='start']").count() >= 1
    screenshot(page, "review")
    page.click(".event-detail .close")

    start, end = ranges[0]
    page.goto(f"{url}/#/recordings?camera=demo&since={start - 10:.3f}&until={end + 20:.3f}")
    page.reload()  # a hash change alone keeps the mounted page
    track = page.locator('.timeline[data-camera="demo"] .track')
    page.locator('.timeline[data-camera="demo"] .range').first.wait_for(timeout=30_000)
    box = page.locator(".timeline-box")
    frm, to = float(box.get_attribute("data-from")), float(box.get_attribute("data-to"))
    rect = track.bounding_box()
    page.mouse.move(rect["x"] + ((start + end) / 2 - frm) / (to - frm) * rect["width"], rect["y"] + rect["height"] / 2)
    page.wait_for_function("() => { const i = document.querySelector('.timeline .preview img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
    screenshot(page, "timeline")
    assert errors == []
    page.close()


def test_the_demo_tells_each_tracked_object_once_numbered_in_the_order_seen(tmp_path: Path) -> None:
    def event(object_id: str, phase: str, label: str = "person", score: float = 0.8) -> str:
        return json.dumps({"type": "object", "object_id": object_id, "phase": phase, "label": label, "score": score,
                           "ts": 1796517690.5})

    path = tmp_path / "events.jsonl"
    path.write_text(event("a", "start") + "\n" + event("a", "update") + "\n" + event("b", "start", "car") + "\n"
                    + event("c", "start", score=0.876) + "\n" + event("d", "sta"))  # the last one still being written
    lines, offset = new_lines(path, 0)
    assert len(lines) == 4 and offset == path.read_text().rindex("\n") + 1
    told = Told()
    said = [told.take(line) for line in lines]
    assert [s.split(" ", 1)[1] if s else None for s in said] == [
        "person #1 seen (score 0.80)", None, "car #1 seen (score 0.80)", "person #2 seen (score 0.88)"]
    assert told.per_label == {"person": 2, "car": 1} and len(told.events) == 4
    log = ['{"daemon": "run", "child": "web", "returncode": 2, "event": "child refused its options", "level": "error"}',
           '{"daemon": "sink", "event": "sink stopped", "level": "info"}',
           "camwire web: error: --port 8080: cannot listen there"]
    assert errors(log) == ["run: child refused its options, child=web, returncode=2",
                           "camwire web: error: --port 8080: cannot listen there"]
    assert errors(log[1:2]) == log[1:2]  # no error: the log's end
