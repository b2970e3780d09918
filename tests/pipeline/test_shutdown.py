"""SIGTERM, as systemd sends it, ends each daemon within 5 s with exit 0, and what a daemon had
accepted is passed on or accounted for: nothing silently lost."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import av

from conftest import EventStream, tcp, wait_log

STOP_WITHIN_S = 5.0  # systemd's stop budget for camwire's units is 15 s; the issue asks for 5


def test_sigterm_stops_every_daemon_cleanly(daemons, zctx, sample_clip: Path, tmp_path: Path) -> None:
    frontend, backend, results, events, frames = tcp(), tcp(), tcp(), tcp(), tcp()
    ring = tmp_path / "ring"
    config = tmp_path / "camwire.toml"
    config.write_text(f'[sockets]\nfrontend = "{frontend}"\nbackend = "{backend}"\nresults = "{results}"\n'
                      f'events = "{events}"\nframes = "{frames}"\n\n'
                      f'[extractor]\npublish_enc = "passthrough"\npublish_wait = 30\n\n'
                      f'[sink]\nevents = "{tmp_path / "events.jsonl"}"\ndata_dir = "{tmp_path / "data"}"\n\n'
                      f'[recorder]\ndir = "{ring}"\nsegment = 2\n\n'
                      f'[cameras.hall]\nurl = "{sample_clip}"\nrealtime = true\n')
    daemons.start("sink", "sink", "--config", str(config))
    stream = EventStream(zctx, events)
    daemons.start("ventilator", "ventilator", "--config", str(config))
    daemons.start("worker", "classifier", "--config", str(config), "--detector", "covered", "--name", "w1")
    daemons.start("recorder", "recorder", "--config", str(config))
    wait_log(daemons.tmp / "recorder.log", lambda r: r["event"] == "recorder started")
    daemons.start("extractor", "extractor", "--config", str(config))
    stream.wait_type("motion_start")  # frames flow through every daemon
    wait_log(daemons.tmp / "recorder.log", lambda r: r["event"] == "segment started")

    # upstream first, as `systemctl stop camwire.target` would (each unit is After= nothing, so
    # the order is ours): each one while the rest still run
    for name in ("extractor", "worker", "ventilator", "recorder", "sink"):
        started = time.monotonic()
        code = daemons.stop(name, timeout=STOP_WITHIN_S)
        assert code == 0, f"{name} exited {code}"
        assert time.monotonic() - started <= STOP_WITHIN_S
    ex = daemons.stats("extractor")["hall"]
    vent, worker, sink, rec = (daemons.stats(n) for n in ("ventilator", "worker", "sink", "recorder"))

    assert vent["received"]["hall"] == ex["sent"]  # the extractor's PUSH lingered until all was delivered
    dropped = sum(vent.get("dropped", {}).get("hall", {}).values())
    assert vent["received"]["hall"] == vent["completed"]["hall"] + dropped + vent["backlog"]  # all accounted for
    assert "worker_lost" not in vent.get("dropped", {}).get("hall", {})  # the worker finished what it took
    assert worker["processed"]["hall"] == vent["completed"]["hall"] == worker["results"] == sink["results"]["hall"]
    written = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(written) == sum(sink["events"].values())  # every event the sink made is on disk

    with sqlite3.connect(ring / "index.db") as db:
        segs = db.execute("SELECT path, frames, closed FROM segments ORDER BY start_ns").fetchall()
    assert segs and all(closed for _, _, closed in segs)  # the open file was finalised
    assert sum(f for _, f, _ in segs) == rec["written"]["hall"] == ex["published"]
    for path, frames, _ in segs:
        with av.open(str(ring / path)) as c:
            assert sum(1 for _ in c.demux(video=0) if _.size) == frames
