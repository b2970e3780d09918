"""The recorder in bad weather: a full disk, a restart on one, a clock far off, garbage on its
sockets, too many cameras, kept clips past their budget. A real recorder process; the test
stands in for the extractors and the sink with its own PUB sockets (the same wire messages)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camwire.common import wire
from camwire.common.ids import event_id
from conftest import fill, tcp
from recorder_feed import DAY_NS, H, W, Feed, closed_rows, metric, rows, start_recorder


def test_full_disk_counts_gaps_and_recording_resumes(daemons, zctx, small_disk, tmp_path: Path) -> None:
    disk = small_disk("8m")
    root = disk / "ring"
    feed = Feed(zctx)
    port = start_recorder(daemons, feed, root, "--min-free", "0", "--exit-when-ended", "cam")
    feed.subscribed()
    proc = daemons.procs["recorder"]
    feed.play(lambda: len(closed_rows(root)) >= 2)

    filler = fill(disk)
    feed.play(lambda: metric(port, "dropped", camera="cam", reason="write_error") >= 10)
    assert proc.poll() is None, "the recorder died on a full disk"

    filler.unlink()
    resumed_ns = time.time_ns()
    feed.play(lambda: any(r["start_ns"] > resumed_ns for r in closed_rows(root)))
    feed.end()
    assert daemons.wait("recorder") == 0

    stats = daemons.stats("recorder")
    lost = stats["dropped"]["cam"]["write_error"]
    assert lost >= 10 and stats["gaps"]["cam"] >= lost
    # every frame that reached the recorder is either in a file or counted as a gap in the index
    segs = rows(root)
    assert all(s["closed"] for s in segs)
    assert sum(s["gaps"] for s in segs) == stats["gaps"]["cam"]
    assert sum(s["frames"] for s in segs) + stats["gaps"]["cam"] == feed.sent() == stats["written"]["cam"] + lost
    assert sorted(p.name for p in (root / "cam").iterdir()) == sorted(Path(s["path"]).name for s in segs)


def test_restart_on_a_full_disk(daemons, zctx, small_disk, tmp_path: Path) -> None:
    disk = small_disk("8m")
    root = disk / "ring"
    feed = Feed(zctx)
    start_recorder(daemons, feed, root, "--min-free", "0", name="first")
    feed.subscribed()
    feed.play(lambda: len(closed_rows(root)) >= 1)
    assert daemons.stop("first") == 0
    before = len(rows(root))

    filler = fill(disk)
    feed2 = Feed(zctx)
    port = start_recorder(daemons, feed2, root, "--min-free", "0", name="second")
    feed2.subscribed()
    feed2.play(lambda: metric(port, "dropped", camera="cam", reason="write_error") >= 10)
    assert daemons.procs["second"].poll() is None, "the recorder does not run on a full disk"

    filler.unlink()
    feed2.play(lambda: len(closed_rows(root)) > before)
    assert daemons.stop("second") == 0
    stats = daemons.stats("second")
    assert stats["dropped"]["cam"]["write_error"] >= 10 and stats["written"]["cam"] >= 1
    assert all(s["closed"] for s in rows(root))


def test_free_space_floor_deletes_the_oldest_ring_files(daemons, zctx, small_disk, tmp_path: Path) -> None:
    disk = small_disk("8m")
    root = disk / "ring"
    feed = Feed(zctx)
    start_recorder(daemons, feed, root, "--min-free", "20%")
    feed.subscribed()
    feed.play(lambda: len(closed_rows(root)) >= 6)
    first = closed_rows(root)[0]
    fill(disk, leave=int(0.2 * (8 << 20)) - 20_000)  # just under the 20 % floor: the oldest file must go
    # the file goes first (that frees the space), then its row
    feed.play(lambda: not (root / first["path"]).exists())
    assert daemons.stop("recorder") == 0
    stats = daemons.stats("recorder")
    assert stats["deleted"]["min_free"] >= 1
    left = rows(root)
    assert left and first["id"] not in {r["id"] for r in left}  # the oldest went, not the whole ring


def test_a_frame_stamped_10_days_ahead_deletes_nothing(daemons, zctx, tmp_path: Path) -> None:
    root = tmp_path / "ring"
    feed = Feed(zctx)
    start_recorder(daemons, feed, root, "--exit-when-ended", "cam")  # the default --retain, 7 days
    feed.subscribed()
    feed.play(lambda: len(closed_rows(root)) >= 2)
    feed.frame(ts_ns=time.time_ns() + 10 * DAY_NS)
    n = len(closed_rows(root))
    feed.play(lambda: len(closed_rows(root)) >= n + 2)
    feed.end()
    assert daemons.wait("recorder") == 0
    stats = daemons.stats("recorder")
    assert stats["clock_skew"] == {"cam": 1} and "deleted" not in stats
    segs = rows(root)
    assert stats["written"]["cam"] == feed.sent() and sum(s["frames"] for s in segs) == feed.sent()
    # the odd frame was recorded at the wall clock: no file starts or ends in the future
    assert all(s["end_ns"] < time.time_ns() for s in segs)
    assert all((root / s["path"]).exists() for s in segs)


def _event(ts_ns: int, etype: str = "camera_covered", camera: str = "cam") -> wire.Event:
    return wire.Event(id=event_id(ts_ns, camera, etype), type=etype, camera=camera, ts=ts_ns / 1e9)


def test_kept_clips_stay_within_their_budget(daemons, zctx, tmp_path: Path) -> None:
    root = tmp_path / "ring"
    feed, events = Feed(zctx), Feed(zctx)
    budget = 150_000
    start_recorder(daemons, feed, root, "--events", events.addr, "--pre", "200ms", "--post", "200ms",
                   "--keep-max-bytes", str(budget), "--keep-retain", "1d", "--max-clock-skew", "3d")
    feed.subscribed()
    events.subscribed()
    feed.play(lambda: len(closed_rows(root)) >= 1)
    old = _event(time.time_ns() - 2 * DAY_NS)  # kept, then deleted by --keep-retain
    events.send(wire.pack(old))
    sent = [old]
    for _ in range(6):
        ev = _event(time.time_ns())
        events.send(wire.pack(ev))
        sent.append(ev)
        n = len(closed_rows(root))
        feed.play(lambda: len(closed_rows(root)) >= n + 2)
    events.send(wire.pack(sent[-1]))  # the same event again: refused, counted
    events.send(wire.pack(_event(time.time_ns(), "motion")))  # not a type kept by default
    feed.play(lambda: len(closed_rows(root)) >= n + 4)
    assert daemons.stop("recorder") == 0

    stats = daemons.stats("recorder")
    assert stats["events_kept"] == {"camera_covered": 7}
    assert stats["keeps_refused"] == {"duplicate": 1}
    assert stats["deleted"]["keep_age"] == 1 and stats["deleted"]["keep_bytes"] >= 1
    kept = [p.parent for p in (root / "kept").glob("*/*/event.json")]
    assert kept and len(kept) < 6
    assert sum(f.stat().st_size for d in kept for f in d.iterdir() if f.suffix == ".mkv") <= budget
    # what is left is the newest events, complete, with their files
    left = sorted(json.loads((d / "event.json").read_text())["id"] for d in kept)
    assert left == sorted(e.id for e in sent[-len(left):])
    assert all(json.loads((d / "event.json").read_text())["complete"] for d in kept)
    assert all(any(f.suffix == ".mkv" for f in d.iterdir()) for d in kept)


def test_cameras_beyond_max_cameras_are_counted_not_recorded(daemons, zctx, tmp_path: Path) -> None:
    root = tmp_path / "ring"
    feed = Feed(zctx)
    start_recorder(daemons, feed, root, "--max-cameras", "2", "--exit-when-ended", "a,b")
    feed.subscribed()
    feed.play(lambda: {r["camera"] for r in closed_rows(root)} >= {"a", "b"}, cameras=("a", "b", "c"))
    feed.end("a", "b")
    assert daemons.wait("recorder") == 0
    stats = daemons.stats("recorder")
    assert {r["camera"] for r in rows(root)} == {"a", "b"} and not (root / "c").exists()
    assert stats["dropped"]["*"]["max_cameras"] == feed.sent("c") and stats["cameras"] == ["a", "b"]


# messages that decode as msgpack, and nearly as camwire's, but are not: each is refused by its type
def _odd_messages() -> list[list[bytes]]:
    now = time.time_ns()
    good = dict(v=1, kind="frame", camera="cam", seq=0, ts_ns=now, width=W, height=H, enc="lz4")
    pixels_part = b"\0" * 10
    frames = [dict(good, ts_ns=2**63), dict(good, ts_ns=-1), dict(good, pts=float("nan")),
              dict(good, dts=float("inf")), dict(good, camera="../etc"), dict(good, camera="x" * 65),
              dict(good, width=10**9), dict(good, seq=2**64 - 1), dict(good, v=2), dict(good, kind="nonsense"),
              dict(good, enc="pickle"), dict(good, channels=7)]
    out = [[msgpack.packb(f), pixels_part] for f in frames]
    out.append([msgpack.packb(dict(v=1, kind="eos", camera="cam", last_seq=2**63))])
    out.append([msgpack.packb(dict(v=1, kind="status", camera="cam", state="exploded", ts_ns=now))])
    return out


def _odd_events() -> list[bytes]:
    base = dict(v=1, kind="event", id="x", type="detection", camera="cam", ts=time.time())
    return [msgpack.packb(dict(base, ts=float("inf"))), msgpack.packb(dict(base, ts=float("nan"))),
            msgpack.packb(dict(base, ts=-5.0)), msgpack.packb(dict(base, camera="")),
            msgpack.packb(dict(base, id="")), msgpack.packb(dict(base, detections=[{"label": "x"}]))]


def test_garbage_and_odd_messages_are_counted_and_a_real_clip_still_recorded(daemons, zctx, tmp_path: Path) -> None:
    root = tmp_path / "ring"
    feed, events = Feed(zctx), Feed(zctx)
    port = start_recorder(daemons, feed, root, "--events", events.addr, "--exit-when-ended", "cam")
    feed.subscribed()
    events.subscribed()
    odd = _odd_messages()
    for parts in odd:
        feed.send(*parts)
    for part in _odd_events():
        events.send(part)
    expected = len(odd) + len(_odd_events())
    deadline = time.monotonic() + 30
    while metric(port, "malformed") < expected:
        assert time.monotonic() < deadline, "the odd messages were not all counted"
        time.sleep(0.1)  # polling the metrics: there is nothing to await from outside
    assert metric(port, "malformed") == expected

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(parts=st.lists(st.binary(max_size=64) | st.builds(msgpack.packb, st.dictionaries(
        st.sampled_from(["v", "kind", "camera", "seq", "ts_ns", "width", "height", "enc", "ts", "id", "type"]),
        st.one_of(st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=8), st.none(), st.binary(max_size=8),
                  st.sampled_from(["frame", "eos", "status", "event", "x"])))), min_size=1, max_size=3),
           to_events=st.booleans())
    def garbage(parts: list[bytes], to_events: bool) -> None:
        (events if to_events else feed).send(*parts)

    garbage()
    assert daemons.procs["recorder"].poll() is None, "garbage killed the recorder"

    # and then a real camera is recorded, whole
    for _ in range(60):
        feed.frame()
        time.sleep(0.04)
    feed.send(wire.pack(wire.Eos(camera="cam", sent=60, last_seq=59)))
    assert daemons.wait("recorder") == 0
    stats = daemons.stats("recorder")
    assert stats["written"]["cam"] == 60 and "gaps" not in stats and sum(stats["malformed"].values()) > expected
    assert "errors" not in stats, stats.get("errors")
    segs = rows(root)
    assert segs and sum(s["frames"] for s in segs) == 60 and all(s["closed"] for s in segs)


def test_recovery_keeps_a_file_it_cannot_read(tmp_path: Path) -> None:
    """``recover`` deletes a left-open file only when it reads and holds nothing; an unreadable one
    keeps its row, and is counted."""
    from camwire.common.counters import Counters
    from camwire.common.logs import RepeatLimiter
    from camwire.recorder.index import Index
    from camwire.recorder.keep import Keeper
    from camwire.recorder.retention import Limits, Retention
    from camwire.recorder.ring import Encoding, Ring
    import structlog

    root = tmp_path / "ring"
    index = Index(root)
    (root / "cam").mkdir()
    (root / "cam" / "unreadable.mkv").mkdir()  # reading it fails with an OSError (EISDIR)
    (root / "cam" / "empty.mkv").write_bytes(b"")
    unreadable = index.open_segment("cam", time.time_ns(), "cam/unreadable.mkv", "h264")
    index.open_segment("cam", time.time_ns(), "cam/empty.mkv", "h264")
    counters, log = Counters(), structlog.get_logger()
    repeats = RepeatLimiter(log)
    keeper = Keeper(root, index, 1, 1, ("detection",), counters, log, repeats)
    ring = Ring(root, index, keeper, Retention(root, index, Limits(), counters, log, repeats), 1.0, Encoding(),
                counters, log, repeats)
    ring.recover()
    assert [s.id for s in index.open_segments()] == [unreadable]
    assert (root / "cam" / "unreadable.mkv").exists() and not (root / "cam" / "empty.mkv").exists()
    assert counters.get("recover_failed", "IsADirectoryError") == 1
    index.close()


def test_units_and_defaults(tmp_path: Path) -> None:
    from camwire.cli import parse
    from camwire.recorder.keep import DEFAULT_KEEP_TYPES

    args = parse(["recorder", "--subscribe", tcp(), "--dir", str(tmp_path), "--segment", "2m", "--max-bytes", "1.5G",
                  "--keep-max-bytes", "10G", "--min-free", "10%"])
    assert (args.segment, args.max_bytes, args.keep_max_bytes, args.min_free) == (120.0, 3 << 29, 10 << 30, 0.1)
    args = parse(["recorder", "--subscribe", tcp(), "--dir", str(tmp_path)])
    assert (args.retain, args.keep_retain, args.min_free, args.max_cameras) == (7 * 86400, 30 * 86400, 0.05, 256)
    assert (args.max_segment_bytes, args.encode_memory, args.max_frame_bytes) == (1 << 30, 3 << 29, 7680 * 4320 * 4)
    assert "motion" not in DEFAULT_KEEP_TYPES


def test_retention_decisions() -> None:
    from camwire.recorder.retention import bytes_to_free, capture_time

    now = 1_790_000_000 * 10**9
    assert capture_time(now - 5 * 10**9, now, DAY_NS) == (now - 5 * 10**9, False)
    assert capture_time(now + 10 * DAY_NS, now, DAY_NS) == (now, True)
    assert capture_time(now - 2 * DAY_NS, now, DAY_NS) == (now, True)
    assert bytes_to_free(1000, 100, 0.05) == 0 and bytes_to_free(1000, 20, 0.05) == 30


def test_pause_decisions() -> None:
    from camwire.recorder.pause import judge

    # (paused before, floor met by the ring's files, free, size, min_free) -> paused after
    assert judge(False, True, 10, 1000, 0.05) is False
    assert judge(False, False, 10, 1000, 0.05) is True  # only foreign files or kept clips left
    assert judge(True, True, 60, 1000, 0.05) is True  # back at the floor, not yet 1.5 times it
    assert judge(True, True, 75, 1000, 0.05) is False and judge(True, False, 20, 1000, 0.05) is True
    assert judge(True, True, 0, 1000, 0.0) is False  # no floor any more (a reload): it resumes
