"""The sink's parts on their own: the events file, the snapshot store, the status book."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import sqlite3

import numpy as np

from camwire.sink import camera_status
from camwire.sink.camera_status import StatusBook, StatusPart
from camwire.sink.cameras import LiveCameras
from camwire.sink.store.status_db import read_sink, read_status
from camwire.sink.store.disk import WriteErrors
from camwire.sink.store.eventlog import EventLog
from camwire.sink.events import SILENT, Events
from camwire.sink.store.snapshots import SnapshotStore
from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter
from camwire.common.pixels import encode_jpeg
from conftest import ROOT, fill


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def __getattr__(self, level: str):
        return lambda event, **kw: self.lines.append((event, kw))


def errors() -> WriteErrors:
    return WriteErrors(Counters(), RepeatLimiter(_Log()))


def event(i: int, camera: str = "c") -> wire.Event:
    return wire.Event(id=f"20261121T000000.{i:09d}Z-{camera}-motion", type="motion", camera=camera,
                      ts=1_795_000_000 + i, seq=i)


JPEG = encode_jpeg(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
SIZE = (80, 60)
# a tiny JPEG whose frame header claims 20000x20000 (1.2 GB decoded): its SOF0 patched
BOMB = JPEG.replace(b"\x00\x3c\x00\x50", b"\x4e\x20\x4e\x20", 1)


def test_events_file_rotates_by_size_and_keeps_a_few(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, errors(), max_bytes=100, keep=2)
    lines = [json.dumps({"n": i, "pad": "x" * 20}).encode() + b"\n" for i in range(20)]
    for line in lines:
        assert log.write(line)
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert all(f.stat().st_size <= 100 for f in files)
    kept = [json.loads(x)["n"] for f in (files[2], files[1], files[0]) for x in f.read_text().splitlines()]
    assert kept == list(range(20 - len(kept), 20))  # the newest, in order, none cut


def test_events_file_reopens_after_logrotate_moved_it(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, errors())
    log.write(b'{"n":1}\n')
    path.rename(tmp_path / "events.jsonl.old")
    log.reopen()
    log.write(b'{"n":2}\n')
    log.close()
    assert path.read_text() == '{"n":2}\n' and (tmp_path / "events.jsonl.old").read_text() == '{"n":1}\n'


def test_events_file_on_a_full_disk_counts_and_never_leaves_half_a_line(small_disk) -> None:
    disk = small_disk("1m")
    errs = errors()
    log = EventLog(disk / "events.jsonl", errs)
    assert log.write(b'{"first":1}\n')
    filler = fill(disk)
    big = b'{"pad":"' + b"x" * 20000 + b'"}\n'  # past the page the file already has
    assert not log.write(big) and not log.write(big)
    assert errs.counters.get("write_errors", "events") == 2 and errs.last.startswith("events: No space left")
    filler.unlink()
    assert log.write(b'{"after":1}\n')
    log.close()
    assert (disk / "events.jsonl").read_text() == '{"first":1}\n{"after":1}\n'


def test_snapshots_are_jpegs_only_never_overwritten_and_bounded(tmp_path: Path) -> None:
    root, counters = tmp_path / "snapshots", Counters()
    size = len(JPEG)
    store = SnapshotStore(root, counters, errors(), retain_s=3600, max_bytes=6 * size, min_free=0.0)
    assert store.save(event(0), b"\xff\xd8 not really a jpeg", SIZE) is None
    assert store.save(event(0), JPEG, (640, 360)) is None  # a JPEG of another size than its frame's
    assert store.save(event(0), BOMB, (20000, 20000)) is None  # 20000x20000 declared: never decoded
    assert counters.get("snapshots", "not_jpeg") == 3
    paths = [store.save(event(i), JPEG, SIZE) for i in range(1, 9)]
    assert all(paths) and store.save(event(8), JPEG, SIZE) is None  # the same id again: the first stays
    assert counters.get("snapshots", "exists") == 1
    on_disk = sorted(root.rglob("*.jpg"))
    assert store.bytes <= 6 * size and len(on_disk) < 8
    assert [p.name for p in on_disk] == [Path(p).name for p in paths[-len(on_disk):]]  # oldest went first
    assert paths[-1].startswith("snapshots/c/")  # relative to the data dir (the store's base)
    meta = json.loads((tmp_path / paths[-1]).with_suffix(".json").read_text())
    assert meta["id"] == event(8).id and meta["snapshot"] == paths[-1]

    again = SnapshotStore(root, counters, errors(), retain_s=3600, max_bytes=6 * size, min_free=0.0)
    assert again.bytes == store.bytes  # a restart knows what is there
    assert again.prune(now=time.time() + 7200) == len(on_disk) and not list(root.rglob("*.jpg"))
    assert not list(root.iterdir())  # empty day and camera folders go too


def test_no_snapshot_under_the_free_space_floor(tmp_path: Path) -> None:
    counters = Counters()
    store = SnapshotStore(tmp_path / "s", counters, errors(), min_free=1.0)  # never that much free
    assert store.save(event(1), JPEG, SIZE) is None and counters.get("snapshots", "low_space") == 1


def status(state: str, **kw) -> wire.Status:
    return wire.Status(camera="c", state=state, ts_ns=time.time_ns(), **kw)


def result(seq: int, error: str | None = None) -> wire.Result:
    return wire.Result(camera="c", seq=seq, ts_ns=time.time_ns(), width=4, height=4, worker="w", error=error)


def test_status_book_says_failed_degraded_silent_and_who_is_up(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "status.db"
    cameras = LiveCameras()  # the sink's live records, which the events and the book share
    events, book = Events(cameras=cameras, silent_after_s=15.0), StatusBook(path, errors(), cameras)

    def tell(msg: wire.Status | wire.Result) -> None:  # as the sink does: the events first
        if isinstance(msg, wire.Status):
            events.on_status(msg)
            book.on_status(msg)
        else:
            events.on_result(msg)
            book.on_result(msg)

    tell(status("failed", reason="HTTP 404 Not Found", last_error="HTTP 404 Not Found", attempts=3))
    book.flush(force=True)
    (row,), _ = read_status(path)
    assert (row["state"], row["reason"], row["attempts"]) == ("failed", "HTTP 404 Not Found", 3)
    assert book.up() == {"c": 0}

    tell(status("online"))
    assert book.up() == {"c": 1}
    clock = [time.monotonic()]
    monkeypatch.setattr("camwire.sink.camera_status.time.monotonic", lambda: clock[0])
    cameras["c"].parts[StatusPart].window.start = clock[0]
    for i in range(3):
        tell(result(i, error="InferenceError: HTTP 503"))
    clock[0] += 6
    book.flush(force=True)
    (row,), _ = read_status(path)
    assert (row["state"], row["reason"]) == ("degraded", "InferenceError: HTTP 503") and book.up() == {"c": 0}
    tell(result(3))  # one good result in the next window: not degraded
    clock[0] += 6
    book.flush(force=True)
    assert read_status(path)[0][0]["state"] == "online"

    assert [e.reason for e in events.silence_check(now=time.monotonic() + 60)] == [SILENT]
    book.flush(force=True)
    assert (read_status(path)[0][0]["state"], read_status(path)[0][0]["reason"]) == ("offline", SILENT)
    tell(result(4))
    assert cameras["c"].state == "online"
    cameras["c"].motion = True  # as sink.motion_state tells it
    book.flush(force=True)
    assert read_status(path)[0][0]["motion"] == 1
    book.close()


def test_status_says_when_its_data_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "status.db"
    book = StatusBook(path, errors())
    book.on_status(status("online"))
    book.flush(force=True)
    sink = read_sink(path)
    assert not sink["stale"] and sink["pid"] == os.getpid() and sink["stopped_ts"] is None
    assert read_sink(path, now=time.time() + 60)["stale"]
    book.close()
    assert read_sink(path)["stopped_ts"] is not None
    shown = subprocess.run([sys.executable, "-m", "camwire", "status", "--dir", str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    assert shown.startswith("STALE: the sink stopped")


def test_the_workers_table_sums_each_ventilators_latest_report(tmp_path: Path) -> None:
    """Two ventilators share a worker: its counts are both's; a newer report of one replaces its
    older one; a ventilator silent past REPORT_KEPT_S leaves the table, whether or not another
    reports meanwhile (a report of none: an older ventilator's)."""
    path = tmp_path / "status.db"
    book = StatusBook(path, errors())
    kept = camera_status.REPORT_KEPT_S

    def report(ventilator: str | None, at: float, **dispatched: int) -> None:
        book.on_workers(wire.Workers(ts_ns=int(at * 1e9), ventilator=ventilator, workers=[
            wire.WorkerLoad(name=name, credits=2, dispatched=n, completed=n, detector="covered")
            for name, n in dispatched.items()]), now=at)

    def table(at: float) -> dict[str, tuple]:
        book.flush(force=True, now=at)
        return {w["name"]: (w["dispatched"], w["completed"], w["credits"], w["updated_ts"])
                for w in read_status(path)[1]}

    report("host-a tcp://0.0.0.0:5558", 100.0, w1=10, w2=4)
    report("host-b tcp://0.0.0.0:5558", 101.0, w1=7)
    assert table(101.0) == {"w1": (17, 17, 4, 101.0), "w2": (4, 4, 2, 100.0)}
    report("host-a tcp://0.0.0.0:5558", 102.0, w1=12)  # w2 left host-a
    assert table(102.0) == {"w1": (19, 19, 4, 102.0)}
    report(None, 102.0 + kept, w3=1)  # host-a and host-b silent since
    assert table(102.0 + kept) == {"w1": (12, 12, 2, 102.0), "w3": (1, 1, 2, 102.0 + kept)}  # host-a's just kept
    assert table(103.0 + kept) == {"w3": (1, 1, 2, 102.0 + kept)}  # host-a gone, though nobody reported since
    assert table(103.0 + 2 * kept) == {}  # and the last one
    book.close()


def test_status_db_on_a_full_disk_is_counted_and_retried(small_disk) -> None:
    disk = small_disk("1m")
    filler = fill(disk)
    errs = errors()
    book = StatusBook(disk / "status.db", errs)  # a sink (re)started on a full disk
    book.on_status(status("online"))
    book.flush(force=True)
    assert errs.counters.get("write_errors", "status_db") >= 1
    filler.unlink()
    book.flush(force=True)
    (row,), _ = read_status(disk / "status.db")
    assert row["state"] == "online"
    assert read_sink(disk / "status.db")["write_errors"]["status_db"] >= 1
    book.close()


def test_an_old_status_db_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "status.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE cameras (camera TEXT PRIMARY KEY, state TEXT)")
    assert read_sink(path) is None
    book = StatusBook(path, errors())  # an older table gains its new columns
    book.on_status(status("online", attempts=2))
    book.flush(force=True)
    assert read_status(path)[0][0]["attempts"] == 2
    book.close()


def test_an_object_snapshot_has_its_box_drawn_a_clean_copy_and_a_thumbnail(tmp_path: Path) -> None:
    import cv2

    scene = np.full((360, 640, 3), 128, np.uint8)
    store = SnapshotStore(tmp_path / "snapshots", Counters(), errors(), min_free=0.0)
    obj = wire.Event(id="20261121T000000.000000001Z-c-object", type="object", camera="c", ts=1_795_000_000.0,
                     phase="start", object_id="20261121T000000.000000001Z-c-object", label="person",
                     box=(100.0, 80.0, 300.0, 240.0))
    named = store.save(obj, encode_jpeg(scene), (640, 360), obj.box, "person")
    path = tmp_path / named
    drawn = cv2.imread(str(path))
    clean = cv2.imread(str(path.with_name(path.name.replace(".jpg", ".clean.jpg"))))
    thumb = cv2.imread(str(path.with_name(path.name.replace(".jpg", ".thumb.jpg"))))
    green = np.array([0, 255, 0])
    # every pixel along the box's four edges is the box's colour; inside and outside, the scene
    edges = [drawn[80, 100:301], drawn[240, 100:301], drawn[80:241, 100], drawn[80:241, 300]]
    assert all(np.abs(edge.astype(int) - green).max() < 60 for edge in edges)
    assert np.abs(drawn[160, 200].astype(int) - 128).max() < 10 and np.abs(drawn[300, 500].astype(int) - 128).max() < 10
    assert np.abs(clean[80, 100:301].astype(int) - 128).max() < 10  # the clean copy has no box
    assert thumb.shape == (90, 160, 3)  # the box with context round it, 16:9, 160 pixels across at most
    meta = json.loads(path.with_name(path.name.replace(".jpg", ".json")).read_text())
    assert meta["snapshot"] == named and meta["box"] == [100.0, 80.0, 300.0, 240.0]
    assert store.prune(now=time.time() + 30 * 86400) == 1 and not list(tmp_path.rglob("*.*"))  # all four go
