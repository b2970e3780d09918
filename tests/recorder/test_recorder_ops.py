"""The recorder as an operator runs it: a reload that changes its limits, a disk that only kept
clips fill, a wrong address, a stream of invented camera names. A real recorder process, with the
test standing in for the extractors and the sink (recorder_feed)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from common import wire
from common.ids import event_id
from conftest import free_port, tcp, wait_log
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


def _used(path: Path) -> int:
    return path.stat().st_blocks * 512


def test_free_space_floor_deletes_the_oldest_kept_clips_too(daemons, zctx, small_disk) -> None:
    """With no byte budget at all, the free-space floor still bounds the disk: ring files that free
    space go first, then the oldest kept clip (hard links: its ring paths alone freed nothing)."""
    disk = small_disk("32m")
    root = disk / "ring"
    # files large enough that what the index's own journal takes meanwhile is small beside them
    feed, events = Feed(zctx, size=(240, 180)), Feed(zctx)
    daemons.start("recorder", "recorder", "--subscribe", feed.addr, "--events", events.addr, "--dir", str(root),
                  "--segment", "1", "--min-free", "20%", "--pre", "1s", "--post", "200ms")
    feed.subscribed()
    events.subscribed()
    feed.play(lambda: len(closed_rows(root)) >= 2)
    older = _event(time.time_ns())
    events.send(wire.pack(older))
    feed.play(lambda: _kept(root).get(older.id, {}).get("complete"))
    n = len(closed_rows(root))
    feed.play(lambda: len(closed_rows(root)) >= n + 3)  # the next window shares no file with this one
    newer = _event(time.time_ns())
    events.send(wire.pack(newer))
    feed.play(lambda: _kept(root).get(newer.id, {}).get("complete"))
    n = len(closed_rows(root))
    feed.play(lambda: len(closed_rows(root)) >= n + 3)  # ring files no clip holds

    older_dir = next(root.glob(f"kept/*/{older.id}"))
    older_bytes = sum(_used(f) for f in older_dir.glob("*.mkv"))
    free_ring = sum(_used(f) for f in root.glob("cam/*.mkv") if f.stat().st_nlink == 1)
    assert older_bytes > 0 and all(f.stat().st_nlink == 2 for f in older_dir.glob("*.mkv"))
    # below the floor by all the ring files that free space and half the older clip: both must go
    st = os.statvfs(disk)
    floor = int(0.2 * st.f_blocks * st.f_frsize)
    want_free = floor - free_ring - older_bytes // 2
    with open(disk / "filler.bin", "wb") as f:  # one fixed size: nothing here takes back what is freed
        os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - want_free)

    deadline = time.monotonic() + 60
    while older_dir.exists():
        assert time.monotonic() < deadline, "the older kept clip was never deleted"
        time.sleep(0.2)  # retention runs every few seconds; the folder is the state to wait on
    assert daemons.stop("recorder") == 0
    stats = daemons.stats("recorder")
    assert stats["deleted"]["keep_min_free"] == 1 and stats["deleted"]["min_free"] >= 3
    kept = _kept(root)
    assert list(kept) == [newer.id] and kept[newer.id]["complete"] and kept[newer.id]["files"]
    newer_dir = next(root.glob(f"kept/*/{newer.id}"))
    assert all((newer_dir / name).exists() for name in kept[newer.id]["files"])
    st = os.statvfs(disk)
    assert st.f_bavail * st.f_frsize >= floor


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

    from common.counters import Counters
    from common.logs import RepeatLimiter
    from recorder.index import Index
    from recorder.keep import Keeper
    from recorder.retention import Limits, Retention
    from recorder.ring import OVER_LIMIT, Encoding, Ring

    root = tmp_path / "ring"
    index = Index(root)
    counters, log = Counters(), structlog.get_logger()
    repeats = RepeatLimiter(log)
    keeper = Keeper(root, index, 1, 1, ("detection",), counters, log, repeats)
    ring = Ring(root, index, keeper, Retention(root, index, Limits(min_free=0), counters, log, repeats, keeper),
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
