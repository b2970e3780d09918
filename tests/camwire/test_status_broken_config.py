"""``camwire status --config`` on a file that is refused (issue 25): a typo saved while the daemons
run on their last good file. It still shows what the sink last wrote, with one warning line that
names FILE:LINE, and exits 0; only a data dir that cannot be read even so is an error. A real sink,
started from the file, keeps status.db; its camera is told of as an extractor tells it (a
wire.Status over the sink's real socket)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import zmq

from camwire.common import wire
from camwire.sink.store.status_db import read_status
from camwire.status import data_dir_in
from conftest import ROOT, tcp


def status(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "camwire", "status", "--config", str(config), *extra], cwd=ROOT,
                          capture_output=True, text=True)


def wait_online(db: Path, camera: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(r["camera"] == camera and r["state"] == "online" for r in read_status(db)[0]):
                return
        except Exception:  # noqa: BLE001 - not created yet
            pass
        assert time.monotonic() < deadline, f"{camera} never online in {db}"
        time.sleep(0.1)  # SQLite has no change notification to await


def test_status_on_a_refused_file_shows_the_last_known_status(tmp_path: Path, daemons, zctx) -> None:
    results = tcp()
    config = tmp_path / "camwire.toml"
    good = f"""[sockets]
results = "{results}"
events = "{tcp()}"

[sink]
data_dir = "{tmp_path / 'data'}"
events = "{tmp_path / 'events.jsonl'}"
update_every = "1s"

[cameras.door]
url = "{tmp_path / 'door.mp4'}"
fps = 5
"""
    config.write_text(good)
    daemons.start("sink", "sink", "--config", str(config))
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(results)
    push.send(wire.pack(wire.Status(camera="door", state="online", ts_ns=time.time_ns())))
    push.close()  # lingers until delivered
    wait_online(tmp_path / "data" / "status.db", "door")
    assert daemons.stop("sink") == 0  # what it last saw stays in status.db

    lines = good.splitlines()
    lines[lines.index("fps = 5")] = "fps = 5,"  # the typo: TOML itself refuses it
    config.write_text("\n".join(lines) + "\n")
    line = lines.index("fps = 5,") + 1
    done = status(config)
    assert done.returncode == 0, done.stderr
    warning = done.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith(f"camwire status: warning: {config}:{line}: ")
    shown = done.stdout.splitlines()
    assert shown[0].startswith("STALE: the sink stopped")
    door = next(x for x in shown if x.startswith("door "))
    assert "online" in door

    done = status(config, "--json")
    assert done.returncode == 0 and done.stderr.startswith(f"camwire status: warning: {config}:{line}: ")
    as_json = json.loads(done.stdout)
    assert as_json["config_error"].startswith(f"{config}:{line}: ")
    assert [c["camera"] for c in as_json["cameras"]] == ["door"]

    # a mistake the TOML parses (a key no camera has): the same, the warning at that key's line
    config.write_text(good.replace("fps = 5", "fpss = 5"))
    done = status(config)
    assert done.returncode == 0 and f"{config}:{line}: " in done.stderr and "fpss" in done.stderr
    assert any(x.startswith("door ") for x in done.stdout.splitlines())

    # the good file: no warning at all
    config.write_text(good)
    done = status(config, "--json")
    assert done.returncode == 0 and done.stderr == "" and "config_error" not in json.loads(done.stdout)

    # the mistake on the data_dir line itself: nothing to read, so an error that says to give --dir
    config.write_text(good.replace(f'data_dir = "{tmp_path / "data"}"', f'data_dir = "{tmp_path / "data"}'))
    done = status(config)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"camwire status: error: {config}:") and "--dir" in done.stderr


def test_the_data_dir_is_read_from_what_a_refused_file_still_says(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CAMWIRE_TEST_DATA", raising=False)
    config = tmp_path / "camwire.toml"
    (tmp_path / ".env").write_text("CAMWIRE_TEST_DATA=/srv/camwire\n")
    cases = {
        '[sink]\ndata_dir = "/a"\n[cameras.x]\nurl = = 1\n': "/a",  # a syntax error elsewhere: its line alone
        '[sink]\ndata-dir = "${CAMWIRE_TEST_DATA}/data"\n[extractor]\nnope = 1\n': "/srv/camwire/data",  # .env
        'sink.data_dir = "/b"\n[x\n': "/b",  # a dotted key at the top
        '[sink]\ndata_dir = "/c\n': None,  # the mistake is on that line
        '[sink]\nevents = "e"\n[x\n': None,  # no data_dir at all
        '[sink]\ndata_dir = "${CAMWIRE_NOWHERE_SET}"\n[x\n': None,  # a variable set nowhere
    }
    for text, want in cases.items():
        config.write_text(text)
        assert data_dir_in(config) == want, text
    assert data_dir_in(tmp_path / "missing.toml") is None
