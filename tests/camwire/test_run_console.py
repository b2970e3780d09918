"""``camwire run`` says where its web console is, in one plain line on stdout, also when stdout is
no terminal: a real run of a file's camera (a looping file, so it goes on until stopped), its
console answering at the address said."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from camwire.sample import make_sample_clip
from conftest import free_port
from processes import OutputLines, stop_process


@pytest.fixture
def run(tmp_path: Path) -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        stop_process(proc, timeout=30)


def test_run_says_where_its_console_is_in_plain_words(tmp_path: Path, run: list[subprocess.Popen]) -> None:
    clip = tmp_path / "short.mp4"
    make_sample_clip(clip, seconds=2.0, fps=10, covered=None)
    port = free_port()
    config = tmp_path / "camwire.toml"
    config.write_text(f'[classifier]\ndetector = "covered"\n\n[sink]\nevents = "{tmp_path / "events.jsonl"}"\n'
                      f'data_dir = "{tmp_path}"\n\n[run]\nworkers = 1\n\n[web]\nport = {port}\n\n'
                      f'[cameras.loopy]\nurl = "{clip}"\nrealtime = true\nloop = true\n')
    proc = subprocess.Popen([sys.executable, "-m", "camwire", "run", "--config", str(config)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run.append(proc)
    output = OutputLines(proc.stdout)
    said = output.until("console at", timeout=60)
    assert said == f"camwire: console at http://127.0.0.1:{port}/ (events, live views, recordings)"
    if not any("web console started" in line for line in output.seen):
        output.until("web console started", timeout=60)  # the console's own log line, in run's log
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/cameras", timeout=30) as response:
        cameras = json.loads(response.read())
    assert response.status == 200 and "loopy" in json.dumps(cameras)
    proc.send_signal(signal.SIGTERM)
    output.drain(timeout=60)
    assert proc.wait(timeout=60) == 0
