"""The recorder as an operator runs it: a reload that changes its limits, a disk that a foreign
file fills, a wrong address, a stream of invented camera names. A real recorder process, with the
test standing in for the extractors and the sink (recorder_feed)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from camwire.common import wire
from camwire.common.ids import event_id
from conftest import EventStream, cameras_for, fill, free_port, scrape, tcp, value, wait_log
from recorder_feed import Feed, closed_rows, metric


def _event(ts_ns: int, camera: str = "cam") -> wire.Event:
    return wire.Event(id=event_id(ts_ns, camera, "camera_covered"), type="camera_covered", camera=camera,
                      ts=ts_ns / 1e9)


def test_sighup_applies_the_files_new_limits(daemons, zctx, tmp_path: Path) -> None:
    root, conf = tmp_path / "ring", tmp_path / "camwire.toml"
    conf.write_text('[recorder]\nsegment = "1s"\nretain = "7d"\n')
    feed = Feed(zctx)
    port = free_port()
    proc = daemons.start("recorder", "recorder", "--config", str(conf), "--subscribe", feed.addr, "--dir", str(root),
                         "--metrics-port", str(port))
    feed.subscribed()
    feed.play(lambda: len(closed_rows(root)) >= 5)
    first = closed_rows(root)
    assert metric(port, "deleted") == 0  # 7 days, no byte budget: nothing goes

    # a byte budget of about two files: the oldest go at once
    budget = sum(s["bytes"] for s in first[-2:])
    conf.write_text(f'[recorder]\nsegment = "1s"\nretain = "7d"\nmax_bytes = {budget}\n')
    proc.send_signal(signal.SIGHUP)
    feed.play(lambda: not any((root / s["path"]).exists() for s in first[:3]))
    assert metric(port, "deleted", reason="bytes") >= 3 and metric(port, "deleted", reason="age") == 0

    # a short retain and no byte budget instead, and a segment length, which needs a restart
    before = closed_rows(root)
    conf.write_text('[recorder]\nsegment = "2s"\nretain = "1s"\n')
    proc.send_signal(signal.SIGHUP)
    warning = wait_log(daemons.tmp / "recorder.log", lambda r: r.get("settings") == ["segment"], timeout=30, proc=proc)
    assert warning["level"] == "warning"
    feed.play(lambda: metric(port, "deleted", reason="age") >= 1
              and not any((root / s["path"]).exists() for s in before))
    assert daemons.stop("recorder") == 0

    stats = daemons.stats("recorder")
    assert stats["reloads"]["applied"] >= 2 and "refused" not in stats["reloads"]
    assert "errors" not in stats, stats.get("errors")
    # the segment length stayed what the recorder started with
    assert all(s["end_ns"] - s["start_ns"] < 1.5e9 for s in closed_rows(root))


def _kept(root: Path) -> dict[str, dict]:
    """Kept clips by event id: their event.json."""
    bodies = [json.loads(p.read_text()) for p in root.glob("kept/*/*/event.json")]
    return {body["id"]: body for body in bodies}


def _paused(port: int) -> float:
    try:
        return value(scrape(port), "camwire_recorder_paused")
    except OSError:  # the metrics server is not up yet
        return -1.0


def test_a_foreign_file_pauses_recording_and_no_kept_clip_goes(daemons, zctx, small_disk, tmp_path: Path) -> None:
    """A file not camwire's fills the volume: the floor deletes ring files only, every kept clip
    stays, recording pauses and a real sink emits ``recording_paused``; once the file is gone,
    recording resumes by itself and the sink emits ``recording_resumed``."""
    disk = small_disk("48m")
    root = disk / "ring"
    results, published = tcp(), tcp()
    daemons.start("sink", "sink", "--bind", results, "--events", str(tmp_path / "events.jsonl"), "--publish",
                  published, "--data-dir", str(tmp_path / "data"))
    told = EventStream(zctx, published)
    # files large enough that what the index's own journal takes meanwhile is small beside them
    feed, events = Feed(zctx, size=(240, 180)), Feed(zctx)
    port = free_port()
    daemons.start("recorder", "recorder", "--subscribe", feed.addr, "--events", events.addr, "--sink", results,
                  "--dir", str(root), "--segment", "1", "--min-free", "20%", "--pre", "1s", "--post", "200ms",
                  "--metrics-port", str(port))
    feed.subscribed()
    events.subscribed()
    feed.play(lambda: len(closed_rows(root)) >= 2)
    kept_ids = []
    for _ in range(3):
        ev = _event(time.time_ns())
        events.send(wire.pack(ev))
        kept_ids.append(ev.id)
        feed.play(lambda: _kept(root).get(ev.id, {}).get("complete"))
        n = len(closed_rows(root))
        feed.play(lambda: len(closed_rows(root)) >= n + 3)  # ring files no clip holds
    kept = {f: f.stat().st_ino for f in root.glob("kept/*/*/*.mkv")}
    assert kept and all(f.stat().st_nlink == 2 for f in kept)

    st = os.statvfs(disk)
    floor = int(0.2 * st.f_blocks * st.f_frsize)
    filler = fill(disk, leave=floor // 4)  # not camwire's: all its ring files would not make up the floor
    feed.play(lambda: _paused(port) == 1 and metric(port, "dropped", camera="cam", reason="paused") >= 10)
    paused = told.wait_for(lambda e: e["type"] == "recording_paused" and e["camera"] == "cam", timeout=30)
    assert "--min-free" in paused["reason"]
    assert {f: f.stat().st_ino for f in kept if f.exists()} == kept, "a kept clip's file was deleted"

    filler.unlink()
    resumed_ns = time.time_ns()
    feed.play(lambda: _paused(port) == 0 and any(r["start_ns"] > resumed_ns for r in closed_rows(root)))
    told.wait_for(lambda e: e["type"] == "recording_resumed" and e["camera"] == "cam", timeout=30)
    assert daemons.stop("recorder") == 0

    stats = daemons.stats("recorder")
    assert stats["pauses"] == 1 and stats["paused"] is False
    # the floor took ring files, and nothing else
    assert stats["deleted"]["min_free"] >= 3 and set(stats["deleted"]) == {"min_free"}
    # resumed twice: the camera's first frame after the start (which the sink, never told of a
    # pause, keeps to itself) and the resume
    assert stats["notices"] == {"recording_paused": {"sent": 1}, "recording_resumed": {"sent": 2}}
    assert set(_kept(root)) == set(kept_ids) and all(f.exists() for f in kept)
    # every frame lost to the pause is a gap in the index, in the first file after it
    lost = stats["dropped"]["cam"]["paused"]
    assert stats["gaps"]["cam"] >= lost and sum(r["gaps"] for r in closed_rows(root)) == stats["gaps"]["cam"]


def test_a_recorder_restarted_after_space_came_back_ends_the_pause_it_told(daemons, zctx, tmp_path: Path) -> None:
    """A recorder that paused and was restarted once space came back (by hand, or by systemd)
    never resumed in its first life: its first frame per camera tells the sink it records, so the
    sink's pause (kept across its own restarts in its ledger) ends, once."""
    import zmq

    results, published = tcp(), tcp()
    daemons.start("sink", "sink", "--bind", results, "--events", str(tmp_path / "events.jsonl"), "--publish",
                  published, "--data-dir", str(tmp_path / "data"))
    told = EventStream(zctx, published)
    before = zctx.socket(zmq.PUSH)  # the recorder's first life, which paused and then died
    before.setsockopt(zmq.LINGER, 1000)
    before.connect(results)
    ts = time.time_ns()
    before.send(wire.pack(wire.Event(id=event_id(ts, "cam", "recording_paused"), type="recording_paused",
                                     camera="cam", ts=ts / 1e9, reason="free space under --min-free")))
    before.close()
    told.wait_for(lambda e: e["type"] == "recording_paused" and e["camera"] == "cam", timeout=30)

    root = tmp_path / "ring"
    feed = Feed(zctx)
    daemons.start("recorder", "recorder", "--subscribe", feed.addr, "--sink", results, "--dir", str(root),
                  "--segment", "1")
    feed.subscribed()

    def resumed() -> bool:
        try:
            told.wait_for(lambda e: e["type"] == "recording_resumed" and e["camera"] == "cam", timeout=0.01)
            return True
        except AssertionError:  # not yet
            return False

    feed.play(resumed)
    assert daemons.stop("recorder") == 0
    assert daemons.stats("recorder")["notices"] == {"recording_resumed": {"sent": 1}}


def test_with_two_sinks_each_cameras_notice_goes_to_the_sink_that_owns_it(daemons, zctx, tmp_path: Path) -> None:
    """``--sink`` twice, as the workers list them (common.sinks): each camera's recording_resumed
    reaches the sink that owns the camera (where its pause was told), so each sink ends its own
    camera's pause (sent to one sink only, the other camera's would never have ended)."""
    import zmq

    from camwire.common.sinks import sink_of

    sinks = sorted([tcp(), tcp()])
    cameras = cameras_for(sinks, 1)  # each sink owns one, whatever the ports
    owned = {addr: [c for c in cameras if sink_of(c, sinks) == addr] for addr in sinks}
    told = {}
    for i, addr in enumerate(sinks):
        published = tcp()
        daemons.start(f"sink{i}", "sink", "--bind", addr, "--events", str(tmp_path / f"events{i}.jsonl"),
                      "--publish", published, "--data-dir", str(tmp_path / f"data{i}"))
        told[addr] = EventStream(zctx, published)
        before = zctx.socket(zmq.PUSH)  # a first life of the recorder that paused each camera at its sink
        before.setsockopt(zmq.LINGER, 1000)
        before.connect(addr)
        ts = time.time_ns()
        [camera] = owned[addr]
        before.send(wire.pack(wire.Event(id=event_id(ts, camera, "recording_paused"), type="recording_paused",
                                         camera=camera, ts=ts / 1e9, reason="free space under --min-free")))
        before.close()
        told[addr].wait_for(lambda e, c=camera: e["type"] == "recording_paused" and e["camera"] == c, timeout=30)

    root = tmp_path / "ring"
    feed = Feed(zctx)
    daemons.start("recorder", "recorder", "--subscribe", feed.addr, "--sink", sinks[1], "--sink", sinks[0],
                  "--dir", str(root), "--segment", "1")
    feed.subscribed()
    both = tuple(c for cams in owned.values() for c in cams)

    def resumed(addr: str) -> bool:
        try:
            told[addr].wait_for(lambda e: e["type"] == "recording_resumed" and e["camera"] == owned[addr][0],
                                timeout=0.01)
            return True
        except AssertionError:  # not yet
            return False

    feed.play(lambda: all(resumed(addr) for addr in sinks), cameras=both)
    assert daemons.stop("recorder") == 0
    assert daemons.stats("recorder")["notices"] == {"recording_resumed": {"sent": 2}}


def test_a_wrong_subscribe_address_is_warned_about_by_name(daemons, zctx, tmp_path: Path) -> None:
    root = tmp_path / "ring"
    feed, events = Feed(zctx), Feed(zctx)
    nobody = tcp()  # nothing listens here
    proc = daemons.start("recorder", "recorder", "--subscribe", feed.addr, "--subscribe", nobody,
                         "--events", events.addr, "--dir", str(root), "--segment", "1")
    feed.subscribed()
    events.subscribed()
    log = daemons.tmp / "recorder.log"
    warning = wait_log(log, lambda r: r["event"].startswith("no answer from peer"), timeout=30, proc=proc)
    assert warning["address"] == nobody and warning["level"] == "warning"
    feed.play(lambda: len(closed_rows(root)) >= 1)  # the right address is recorded all the same
    assert daemons.stop("recorder") == 0
    warned = [json.loads(line).get("address") for line in log.read_text().splitlines()
              if line.startswith("{") and json.loads(line)["event"].startswith("no answer from peer")]
    assert warned == [nobody]


def test_invented_camera_names_do_not_grow_the_ring(tmp_path: Path) -> None:
    """Per-camera state is bounded by --max-cameras whatever names come: a camera idle long enough
    is forgotten (with its end) to make room, the rest are counted, not remembered."""
    import structlog

    from camwire.common.counters import Counters
    from camwire.common.logs import RepeatLimiter
    from camwire.recorder.index import Index
    from camwire.recorder.keep import Keeper
    from camwire.recorder.retention import Limits, Retention
    from camwire.recorder.ring import OVER_LIMIT, Encoding, Ring

    root = tmp_path / "ring"
    index = Index(root)
    counters, log = Counters(), structlog.get_logger()
    repeats = RepeatLimiter(log)
    keeper = Keeper(root, index, 1, 1, ("detection",), counters, log, repeats)
    ring = Ring(root, index, keeper, Retention(root, index, Limits(min_free=0), counters, log, repeats),
                1.0, Encoding(), counters, log, repeats, max_cameras=8)
    for batch in range(20):
        for i in range(50):
            ring.on_control(wire.Eos(camera=f"x{batch}-{i}", sent=0, last_seq=0))
        assert len(ring.cameras) <= 8 and ring.ended <= set(ring.cameras)
        for cam in ring.cameras.values():
            cam.last_seen -= 3600  # an hour later: every camera so far is long idle
    assert len(ring.cameras) == 8
    assert counters.get("dropped", OVER_LIMIT, "max_cameras") == 20 * (50 - 8)
    index.close()
