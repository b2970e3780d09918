"""web.events_index: the sink's real event log (sink.store.eventlog, rotating) and real snapshots
(sink.store.snapshots) followed into the index, line by line."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import structlog

from camwire.sink.store.disk import WriteErrors
from camwire.sink.store.eventlog import EventLog
from camwire.sink.store.snapshots import SnapshotStore
from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.ids import event_id
from camwire.common.logs import RepeatLimiter
from camwire.common.pixels import encode_jpeg
from camwire.web.events_index import EventIndex, decode_cursor, encode_cursor

T0 = 1_790_000_000.0


def _errors() -> WriteErrors:
    return WriteErrors(Counters(), RepeatLimiter(structlog.get_logger()))


def line(event: wire.Event) -> bytes:
    return msgspec.json.encode(event) + b"\n"  # as sink.daemon writes it


def detection(i: int, camera: str = "door", label: str = "person", **kw) -> wire.Event:
    ts = T0 + i
    return wire.Event(id=event_id(int(ts * 1e9), camera, "detection"), type="detection", camera=camera, ts=ts, seq=i,
                      detections=[wire.Detection(label=label, confidence=0.9, box=(1, 2, 30, 40))], **kw)


def obj(phase: str, first: float, last: float, camera: str = "yard", **kw) -> wire.Event:
    oid = event_id(int(first * 1e9), camera, "object")
    eid = oid if phase == "start" else event_id(int(last * 1e9), camera, "object")
    return wire.Event(id=eid, type="object", camera=camera, ts=last, object_id=oid, phase=phase, label="car",
                      score=0.8, top_score=0.9, first_seen=first, last_seen=last, box=(5, 5, 50, 50), **kw)


def fd_of(index: EventIndex) -> int:
    assert index._fd is not None
    return index._fd


def ids(page: dict) -> list[str]:
    return [e["id"] for e in page["events"]]


def all_pages(index: EventIndex, **kw) -> list[str]:
    out, cursor = [], None
    while True:
        page = index.query(before=cursor, **kw)
        out += ids(page)
        cursor = page["next"]
        if cursor is None:
            return out


def test_rotated_files_partial_line_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    size = len(line(detection(10)))  # the longest (a seq of two digits)
    log = EventLog(path, _errors(), max_bytes=size * 4, keep=3)  # four lines a file
    events = [detection(i) for i in range(14)]
    for e in events:
        assert log.write(line(e))
    # 14 lines, 4 a file: .3 (0-3) .2 (4-7) .1 (8-11) live (12-13); nothing rotated away yet
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["events.jsonl", "events.jsonl.1", "events.jsonl.2",
                                                            "events.jsonl.3"]
    index = EventIndex(path, tmp_path)
    assert index.poll() == 14 and index.poll() == 0
    assert ids(index.query(limit=100)) == [e.id for e in reversed(events)]

    # a line caught half written is taken once whole, and never counted as bad
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    half = line(detection(14))
    os.write(fd, half[:25])
    assert index.poll() == 0 and index.malformed == 0
    os.write(fd, half[25:])
    assert index.poll() == 1 and index.get(detection(14).id) is not None
    os.write(fd, b"{this is not json\n")
    os.write(fd, b'{"kind": "event", "id": "x"}\n')  # JSON, but not an event
    os.close(fd)
    assert index.poll() == 0 and index.malformed == 2

    # rotations while following: the rest of the old file, then the new one; and two rotations
    # between two polls: the rotated file never seen as the live one is read too
    log2 = EventLog(path, _errors(), max_bytes=size * 4, keep=3)
    more = [detection(i) for i in range(15, 27)]
    for e in more:  # the file held (12-14 and the garbage) rotates at once, then 15-18 and 19-22 do
        log2.write(line(e))
    held = os.fstat(fd_of(index)).st_ino
    assert (path.with_name("events.jsonl.3").stat().st_ino, path.stat().st_size) == (held, 4 * size)
    assert index.poll() == 12
    assert index.malformed == 2
    # four rotations: the file held is gone from the rotated ones, every one of them is newer
    most = [detection(i) for i in range(27, 43)]
    for e in most:
        log2.write(line(e))
    assert index.poll() == 16
    got = all_pages(index, limit=7)
    assert got == [e.id for e in reversed(events + [detection(14)] + more + most)]
    assert index.counts() == {"detection": 43} and index.malformed == 2
    assert index.cameras() == ["door"] and index.labels() == ["person"]
    index.close()


def test_moved_away_and_truncated(tmp_path: Path) -> None:
    """logrotate's rename then a new file (SIGHUP: EventLog.reopen); copytruncate's file cut to 0."""
    path = tmp_path / "events.jsonl"
    log = EventLog(path, _errors())
    index = EventIndex(path, tmp_path)
    assert index.poll() == 0  # no file yet
    log.write(line(detection(0)))
    assert index.poll() == 1
    log.write(line(detection(1)))
    path.rename(tmp_path / "events.jsonl-20260101")
    assert index.poll() == 1  # still the file held
    log.reopen()
    log.write(line(detection(2)))
    log.write(line(detection(3)))
    assert index.poll() == 2
    os.truncate(path, 0)
    log.reopen()
    log.write(line(detection(4)))
    assert index.poll() == 1
    assert ids(index.query()) == [detection(i).id for i in (4, 3, 2, 1, 0)]


def test_object_phases_are_one_row(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, _errors())
    start = obj("start", T0 + 10, T0 + 10)
    update = obj("update", T0 + 10, T0 + 12, zones=["drive"])
    end = obj("end", T0 + 10, T0 + 15, zones=["drive", "gate"])
    for e in (detection(5), start, detection(11, camera="yard", label="dog"), update, end, detection(20)):
        log.write(line(e))
    index = EventIndex(path, tmp_path)
    assert index.poll() == 6
    assert index.counts() == {"detection": 3, "object": 1}
    page = index.query()
    # ordered by the object's first_seen: it sits between the detections at 5 s, 11 s and 20 s
    assert ids(page) == [detection(20).id, detection(11, camera="yard").id, end.id, detection(5).id]
    row = page["events"][2]
    assert (row["phase"], row["object_id"], row["last_seen"]) == ("end", start.id, T0 + 15)
    assert row["zones"] == ["drive", "gate"]
    assert row["kind"] == "event" and row["v"] == 1  # the sink's line as it is
    assert row["duration"] == 5.0  # how long it stayed: first_seen to its last sighting
    assert "duration" not in page["events"][0]  # an object's alone
    assert index.get(start.id)["id"] == end.id and index.get(end.id)["id"] == end.id
    assert index.get("nope") is None

    # an older phase read late (a file read again) does not replace the newest, nor is it told twice
    log.write(line(update))
    assert index.poll() == 1 and index.get(start.id)["phase"] == "end"
    # every phase it told, oldest first (the review page's timeline of the object)
    assert [(p["ts"], p["phase"]) for p in index.phases([start.id])[start.id]] == [
        (T0 + 10, "start"), (T0 + 12, "update"), (T0 + 15, "end")]

    assert ids(index.query(label="car")) == [end.id]
    assert ids(index.query(label="dog")) == [detection(11, camera="yard").id]
    assert ids(index.query(zone="gate")) == ids(index.query(zone="drive")) == [end.id]
    assert ids(index.query(type="object")) == [end.id]
    assert ids(index.query(camera="yard")) == [detection(11, camera="yard").id, end.id]
    assert ids(index.query(since=T0 + 10, until=T0 + 11)) == [detection(11, camera="yard").id, end.id]
    assert index.labels() == ["car", "dog", "person"] and index.cameras() == ["door", "yard"]


def test_a_live_object_has_stayed_so_far_and_a_new_type_is_a_row_like_any_other(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, _errors())
    parked = obj("update", T0 + 10, T0 + 22, stationary=True)  # no end yet: 12 s so far, not moved lately
    mask = wire.Event(id=event_id(int((T0 + 30) * 1e9), "yard", "suggested_mask"), type="suggested_mask",
                      camera="yard", ts=T0 + 30, label="person", box=(10, 20, 30, 90))
    for e in (parked, mask):
        log.write(line(e))
    index = EventIndex(path, tmp_path)
    assert index.poll() == 2
    live = index.get(parked.object_id)
    assert (live["phase"], live["duration"], live["stationary"]) == ("update", 12.0, True)
    assert ids(index.query()) == [mask.id, parked.id] and ids(index.query(label="person")) == [mask.id]
    assert index.query(type="suggested_mask")["events"][0]["box"] == [10, 20, 30, 90]
    stepped_back = obj("end", T0 + 10, T0 + 9)  # a camera's clock stepped back: no negative stay
    log.write(line(msgspec.structs.replace(stepped_back, ts=T0 + 40)))
    index.poll()
    assert index.get(parked.object_id)["duration"] == 0.0


def test_paging_is_stable_while_lines_arrive(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, _errors())
    old = [detection(i) for i in range(0, 50, 2)]  # 25 events, every 2 s
    for e in old:
        log.write(line(e))
    index = EventIndex(path, tmp_path)
    index.poll()
    first = index.query(limit=10)
    assert ids(first) == [e.id for e in reversed(old)][:10]
    # newer events, and some at the very same ts as rows still to come: neither shifts the next page
    late = [detection(31, camera="aaa"), detection(28, camera="aaa"), detection(20, camera="zzz")]
    for e in [detection(i) for i in range(100, 105)] + late:
        log.write(line(e))
    assert index.poll() == 8
    second = index.query(limit=10, before=first["next"])
    third = index.query(limit=10, before=second["next"])
    rest = ids(second) + ids(third)
    expected = [e.id for e in reversed(old)][10:]
    # the two late arrivals fall inside the pages not yet read, in their order; nothing repeats
    assert [i for i in rest if "door" in i] == expected and third["next"] is None
    assert len(rest) == len(set(rest)) == 17
    assert not set(rest) & set(ids(first))

    assert len(index.query(limit=0)["events"]) == 1
    assert len(index.query(limit=10_000)["events"]) == 33
    # the two late ones below the cursor come in their place: at the same ts, by key
    at = rest.index(detection(28, camera="aaa").id)
    assert rest[at - 1] == detection(28).id and rest[rest.index(detection(20).id) - 1] == detection(20, camera="zzz").id
    assert decode_cursor(encode_cursor(T0 + 0.1, "k:1")) == (T0 + 0.1, "k:1")
    with pytest.raises(ValueError):
        index.query(before="garbage!")


def test_urls_of_snapshots_thumbs_and_clips(tmp_path: Path) -> None:
    data = tmp_path / "data"
    counters = Counters()
    store = SnapshotStore(data / "snapshots", counters, _errors())
    jpeg = encode_jpeg(np.full((120, 160, 3), 90, np.uint8))
    now = time.time()
    start = obj("start", now, now)
    shot = store.save(start, jpeg, (160, 120), box=(10, 10, 60, 60), label="car")  # an object's: with a thumb
    plain = detection(1)
    plain_shot = store.save(plain, jpeg, (160, 120))  # a detection's: no thumb
    assert shot and plain_shot
    path = tmp_path / "events.jsonl"
    log = EventLog(path, _errors())
    log.write(line(msgspec.structs.replace(start, snapshot=shot)))
    log.write(line(msgspec.structs.replace(plain, snapshot=plain_shot)))
    log.write(line(detection(2)))
    kept = {start.object_id, plain.id}
    index = EventIndex(path, data, kept=kept.__contains__)
    index.poll()
    o, d = index.get(start.id), index.get(plain.id)
    assert o["snapshot_url"] == f"/media/{shot}" and o["thumb_url"] == f"/media/{shot[:-4]}.thumb.jpg"
    assert (data / o["thumb_url"].removeprefix("/media/")).is_file()
    assert o["clip_url"] == f"/api/events/{start.object_id}/clip.mp4"
    assert d["snapshot_url"] == f"/media/{plain_shot}" and d["thumb_url"] is None
    assert d["clip_url"] == f"/api/events/{plain.id}/clip.mp4"
    bare = index.get(detection(2).id)
    assert bare["snapshot_url"] is None and bare["thumb_url"] is None and bare["clip_url"] is None


def test_bounded_rows_and_queries_from_another_thread(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, _errors())
    index = EventIndex(path, tmp_path, max_rows=10)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                index.query(label="person", limit=5)
                index.counts()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(40):
            log.write(line(detection(i)))
            index.poll()
    finally:
        stop.set()
        t.join(timeout=30)
    assert not errors
    assert index.counts() == {"detection": 10} and index.stats() == {"taken": 40, "malformed": 0, "rows": 10}
    assert ids(index.query(limit=100)) == [detection(i).id for i in range(39, 29, -1)]
    assert index.labels() == ["person"]


def test_a_long_stay_keeps_its_start_and_newest_phases_only(tmp_path: Path) -> None:
    """A car parked all day is updated every few seconds: the index keeps MAX_PHASES of its phases
    (its start and the newest), not thousands."""
    from camwire.web.events_index import MAX_PHASES

    path = tmp_path / "events.jsonl"
    log = EventLog(path, _errors())
    start = obj("start", T0, T0)
    log.write(line(start))
    for i in range(1, MAX_PHASES + 20):
        log.write(line(obj("update", T0, T0 + i, changes=["stationary"] if i == 1 else ["score"])))
    index = EventIndex(path, tmp_path)
    index.poll()
    phases = index.phases([start.id])[start.id]
    assert len(phases) == MAX_PHASES
    assert phases[0] == {"ts": T0, "phase": "start", "changes": []}
    assert [p["ts"] for p in phases[1:]] == [T0 + i for i in range(21, MAX_PHASES + 20)]
