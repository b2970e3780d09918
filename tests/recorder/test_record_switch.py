"""A camera's ``record`` switch (recorder.record_switch): the sink's ``camera_switch`` event stops
the recorder writing that camera, and the next one resumes it; the setting outlives a restart of
the recorder (index.db), and a recorder that was down when it was set learns it from the sink
when it reports in. Real recorder processes; the sink a stand-in PUB, or a real sink."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import zmq

from camwire.common import wire
from camwire.common.ids import event_id
from conftest import EventStream, tcp
from recorder_feed import Feed, closed_rows, rows, start_recorder


def told(camera: str, on: bool, ts_ns: int | None = None, switch: str = "record") -> bytes:
    """The sink's ``camera_switch`` event, as sink.switches makes it."""
    ts_ns = ts_ns or time.time_ns()
    return wire.pack(wire.Event(id=event_id(ts_ns, camera, "camera_switch"), type="camera_switch", camera=camera,
                                ts=ts_ns / 1e9, reason=wire.switch_reason(switch, on, "console 127.0.0.1")))


def started_after(root: Path, camera: str, ts_ns: int) -> list[dict]:
    return [r for r in rows(root) if r["camera"] == camera and r["start_ns"] > ts_ns]


def closed_of(root: Path, camera: str) -> int:
    return sum(r["camera"] == camera for r in closed_rows(root))


def said(log: Path, camera: str, on: bool) -> int:
    """How many times the recorder's JSON log says it switched ``camera``'s recording on (off)."""
    what = "recording switched on" if on else "recording switched off"
    n = 0
    for line in log.read_text(errors="replace").splitlines() if log.exists() else ():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        n += record.get("event") == what and record.get("camera") == camera
    return n


def switched(feed: Feed, log: Path, camera: str, on: bool, n: int = 1) -> int:
    """Frames played until the recorder has said it ``n`` times; the wall clock then, ns."""
    feed.play(lambda: said(log, camera, on) >= n, cameras=("a", "b"))
    return time.time_ns()


def test_record_off_stops_a_camera_on_resumes_it_and_a_restart_keeps_it(daemons, zctx, tmp_path: Path) -> None:
    root, log = tmp_path / "ring", tmp_path / "recorder.log"
    feed, events = Feed(zctx), Feed(zctx)
    start_recorder(daemons, feed, root, "--events", events.addr)
    feed.subscribed()
    events.subscribed()
    both = ("a", "b")
    feed.play(lambda: closed_of(root, "a") >= 1 and closed_of(root, "b") >= 1, cameras=both)

    events.send(told("a", False, switch="detect"))  # another switch: nothing to the recorder
    events.send(told("a", False))
    off = switched(feed, log, "a", on=False)
    events.send(told("a", False))  # said again, as the sink retells it: nothing changes
    b = closed_of(root, "b")
    feed.play(lambda: closed_of(root, "b") >= b + 3, cameras=both)
    assert started_after(root, "a", off) == [] and all(r["closed"] for r in rows(root) if r["camera"] == "a")

    events.send(told("a", True))
    on = switched(feed, log, "a", on=True)
    feed.play(lambda: any(r["closed"] for r in started_after(root, "a", on)), cameras=both)

    events.send(told("a", False))
    off = switched(feed, log, "a", on=False, n=2)
    assert daemons.stop("recorder") == 0
    first = daemons.stats("recorder")
    assert first["switched_off"] == ["a"] and first["dropped"]["a"]["switched_off"] > 0
    assert "a" not in first.get("gaps", {})  # switched off on purpose: no frame was lost
    with sqlite3.connect(f"file:{root / 'index.db'}?mode=ro", uri=True) as db:
        assert db.execute("SELECT camera, recording, reason FROM record_switch").fetchall() == [
            ("a", 0, "record=off by console 127.0.0.1")]

    # started again: a stays off from its first frame, b records
    again, events = Feed(zctx), Feed(zctx)
    again.seq = dict(feed.seq)
    restarted = time.time_ns()
    start_recorder(daemons, again, root, "--events", events.addr, name="again")
    again.subscribed()
    b = closed_of(root, "b")
    again.play(lambda: closed_of(root, "b") >= b + 2, cameras=both)
    assert started_after(root, "a", restarted) == []
    assert daemons.stop("again") == 0
    stats = daemons.stats("again")
    assert stats["switched_off"] == ["a"] and stats["dropped"]["a"]["switched_off"] > 0
    assert "a" not in stats.get("written", {})


def test_a_recorder_down_when_it_was_set_learns_it_from_the_sink(daemons, zctx, tmp_path: Path) -> None:
    results, published = tcp(), tcp()
    config = tmp_path / "camwire.toml"  # the cameras the sink knows, so switches for them are taken
    config.write_text("".join(f'[cameras.{c}]\nurl = "rtsp://127.0.0.1:1/{c}"\n' for c in ("a", "b")))
    daemons.start("sink", "sink", "--bind", results, "--events", str(tmp_path / "events.jsonl"), "--publish",
                  published, "--data-dir", str(tmp_path / "data"), "--config", str(config))
    events = EventStream(zctx, published)
    console = zctx.socket(zmq.PUSH)  # as web.sink_link sends it
    console.setsockopt(zmq.LINGER, 1000)
    console.connect(results)
    console.send(wire.pack(wire.Switch(camera="a", switch="record", on=False, by="console 127.0.0.1")))
    events.wait_type("camera_switch")
    console.close()

    root = tmp_path / "ring"
    feed = Feed(zctx)
    start_recorder(daemons, feed, root, "--events", published, "--sink", results)
    feed.subscribed()
    both = ("a", "b")
    # its first frame of a tells the sink it records a; the sink answers with a's record switch
    off = switched(feed, tmp_path / "recorder.log", "a", on=False)
    b = closed_of(root, "b")
    feed.play(lambda: closed_of(root, "b") >= b + 2, cameras=both)
    assert started_after(root, "a", off) == []
    assert daemons.stop("recorder") == 0
    assert daemons.stats("recorder")["switched_off"] == ["a"]
    assert daemons.stop("sink") == 0
    # told once in the events file: what went to the recorder again was the same event, on PUB alone
    lines = (tmp_path / "events.jsonl").read_text().count('"camera_switch"')
    assert lines == 1

    # a sink that lost what it kept (a new --data-dir): it says a records, and the recorder, which
    # kept a's "off" in its index, follows the sink that owns the switch
    daemons.start("sink2", "sink", "--bind", results, "--events", str(tmp_path / "events2.jsonl"), "--publish",
                  published, "--data-dir", str(tmp_path / "data2"), "--config", str(config))
    again = Feed(zctx)
    again.seq = dict(feed.seq)
    start_recorder(daemons, again, root, "--events", published, "--sink", results, name="again")
    again.subscribed()
    on = switched(again, daemons.tmp / "again.log", "a", on=True)
    again.play(lambda: any(r["closed"] for r in started_after(root, "a", on)), cameras=both)
    assert daemons.stop("again") == 0
