"""web.recordings over a real recorder folder: frames through the recorder's own ring (recorder.ring:
libx264 into Matroska segments, the SQLite index, kept clips hard-linked by recorder.keep), and
every clip made checked by opening it with PyAV."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import structlog

from camwire.common import pixels, wire
from camwire.common.counters import Counters
from camwire.common.ids import event_id
from camwire.common.logs import RepeatLimiter
from camwire.recorder import catalog
from camwire.recorder.catalog import kept_files, kept_ids
from camwire.recorder.index import Index
from camwire.recorder.keep import Keeper
from camwire.recorder.retention import Limits, Retention
from camwire.recorder.ring import Encoding, Ring
from camwire.recorder.segment import start_of
from camwire.recorder import previews
from camwire.recorder.export import export_range, ranges, remux_to_mp4, usage
from camwire.web.recordings import ClipCache, event_clip, range_clip

FPS = 25
FRAME_NS = 1_000_000_000 // FPS
W, H = 64, 48
FRAME_S = 1 / FPS


@dataclass
class Recorded:
    root: Path
    t0: float  # capture time of the first frame, s
    object_id: str


def picture(i: int) -> np.ndarray:
    """A bar sliding across a gradient: smooth motion, so x264 puts key frames only where told."""
    image = np.tile(np.linspace(0, 200, W, dtype=np.uint8), (H, 1))[:, :, None].repeat(3, axis=2)
    x = i % W
    image[:, x: x + 4] = 255
    return image


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """``door``: 0-10 s, nothing 10-15 s, 15-19 s with its last segment still being written.
    ``yard``: 0-2 s, a 1 s hole, 3-5 s, then its end. Segments of 2 s with a key frame every
    second at most (x264 adds some where it sees a cut). An ``object`` seen on door from 3.5 s
    to 4.5 s keeps [2.5 s, 5.5 s]: two segments."""
    root = tmp_path_factory.mktemp("rec") / "ring"
    index = Index(root)
    counters, log = Counters(), structlog.get_logger()
    repeats = RepeatLimiter(log)
    keeper = Keeper(root, index, 1.0, 1.0, ("object",), counters, log, repeats)
    ring = Ring(root, index, keeper, Retention(root, index, Limits(min_free=0), counters, log, repeats),
                2.0, Encoding(gop=FPS), counters, log, repeats)
    t0_ns = (time.time_ns() - 600 * 10**9) // 10**6 * 10**6  # ten minutes ago, on a millisecond
    seqs: dict[str, int] = {}

    def feed(camera: str, first: int, last: int) -> None:
        for i in range(first, last):
            seq = seqs.get(camera, 0)
            seqs[camera] = seq + 1
            header = wire.FrameHeader(camera=camera, seq=seq, ts_ns=t0_ns + i * FRAME_NS, width=W, height=H,
                                      pts=i / FPS, enc="lz4")
            ring.on_frame(pixels.encode_frame(header, picture(i)))

    feed("door", 0, 10 * FPS)
    feed("door", 15 * FPS, 19 * FPS)
    feed("yard", 0, 2 * FPS)
    feed("yard", 3 * FPS, 5 * FPS)
    ring.on_control(wire.Eos(camera="yard", sent=seqs["yard"], last_seq=seqs["yard"] - 1))
    t0 = t0_ns / 1e9
    oid = event_id(t0_ns + 3_500_000_000, "door", "object")
    for phase, last in (("start", 3.5), ("end", 4.5)):
        ring.on_event(wire.Event(id=oid if phase == "start" else event_id(t0_ns + 4_500_000_000, "door", "object"),
                                 type="object", camera="door", ts=t0 + last, object_id=oid, phase=phase, label="car",
                                 first_seen=t0 + 3.5, last_seen=t0 + last))
    assert ring.cameras["door"].segment is not None  # door's 17-19 s file is still open
    ring.tick()
    index.close()
    return Recorded(root, t0, oid)


def opened(path: Path) -> tuple[str, int, float]:
    """(codec, frames decoded, seconds from the first frame to past the last)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        span = float((frames[-1].pts - frames[0].pts) * frames[0].time_base) + FRAME_S
        return stream.codec_context.name, len(frames), span


def faststart(path: Path) -> bool:
    data = path.read_bytes()
    return 0 <= data.find(b"moov") < data.find(b"mdat")


def test_ranges_merge_touching_segments_and_show_gaps(recorded: Recorded) -> None:
    t0 = recorded.t0
    got = ranges(recorded.root, None, None, None)
    assert set(got) == {"door", "yard"}
    (a0, a1), (b0, b1) = got["door"]  # five 2 s files in one range; the 5 s hole; the open file's range
    assert (a0, b0) == pytest.approx((t0, t0 + 15), abs=1e-3)
    assert a1 == pytest.approx(t0 + 10, abs=1e-3)
    # the open file (17-19 s) counts up to its newest frame on disk, at least its first cluster
    assert t0 + 17 < b1 <= t0 + 19 + 1e-3
    assert got["yard"] == [pytest.approx((t0, t0 + 5), abs=1e-3)]  # a 1 s hole is no gap

    only = ranges(recorded.root, "yard", None, None)
    assert list(only) == ["yard"]
    window = ranges(recorded.root, "door", t0 + 3, t0 + 16)
    assert window == {"door": [pytest.approx((t0 + 3, t0 + 10), abs=1e-3), pytest.approx((t0 + 15, t0 + 16), abs=1e-3)]}
    assert ranges(recorded.root, "door", t0 + 11, t0 + 14) == {}
    assert ranges(recorded.root, "nobody", None, None) == {}


def test_nothing_recorded_yet(tmp_path: Path) -> None:
    assert ranges(tmp_path, None, None, None) == {}
    assert kept_ids(tmp_path) == set() and kept_files(tmp_path, "x") == []
    with pytest.raises(LookupError):
        export_range(tmp_path, "door", 0, 10, tmp_path / "x.mp4")
    assert usage(tmp_path) == {"segments": 0, "ring_bytes": 0, "kept_clips": 0}
    Index(tmp_path / "fresh").close()  # tables, no rows
    assert ranges(tmp_path / "fresh", None, None, None) == {}


def test_usage_counts_what_the_index_holds(recorded: Recorded) -> None:
    files = [f for camera in ("door", "yard") for f in (recorded.root / camera).glob("*.mkv")]
    got = usage(recorded.root)
    assert list(got) == ["segments", "ring_bytes", "kept_clips"]
    assert got["segments"] == len(files) and got["kept_clips"] == 1
    assert 0 < got["ring_bytes"] <= sum(f.stat().st_size for f in files)  # the open file counts 0 until closed


def test_export_range_is_h264_mp4_of_that_span(recorded: Recorded, tmp_path: Path) -> None:
    t0 = recorded.t0
    # from a file's first frame (a key frame; a millisecond past it, clear of float rounding) to
    # inside the third file: 2 s to 7.5 s
    out = export_range(recorded.root, "door", t0 + 2.001, t0 + 7.5, tmp_path / "a.mp4")
    codec, frames, span = opened(out)
    assert codec == "h264" and faststart(out)
    assert abs(span - 5.5) <= 2 * FRAME_S and abs(frames - 5.5 * FPS) <= 2

    # into the file still being written (17-19 s): what is on disk of it, at least its first
    # cluster (a second), after the last second of the closed 15-17 s file
    codec, frames, span = opened(export_range(recorded.root, "door", t0 + 16, t0 + 30, tmp_path / "b.mp4"))
    assert codec == "h264" and 2 * FPS < frames <= 4 * FPS

    for start, end, camera in ((t0 + 11, t0 + 14, "door"), (t0, t0 + 5, "nobody"), (t0 + 5, t0 + 5, "door")):
        with pytest.raises(LookupError):
            export_range(recorded.root, camera, start, end, tmp_path / "none.mp4")
        assert not (tmp_path / "none.mp4").exists()


def test_kept_clip_and_its_mp4(recorded: Recorded, tmp_path: Path) -> None:
    assert kept_ids(recorded.root) == {recorded.object_id}
    files = kept_files(recorded.root, recorded.object_id)
    assert len(files) == 2 and all(f.is_file() and f.parent.name == recorded.object_id for f in files)
    starts = [start_of(f) / 1e9 - recorded.t0 for f in files]
    assert starts == pytest.approx([2.0, 4.0], abs=1e-3)
    assert kept_files(recorded.root, "nope") == []

    out = remux_to_mp4(files, tmp_path / "kept.mp4")
    codec, frames, span = opened(out)
    assert codec == "h264" and faststart(out)
    assert frames == 4 * FPS and abs(span - 4.0) <= FRAME_S
    with pytest.raises(ValueError):
        remux_to_mp4([tmp_path / "kept.mp4"], tmp_path / "again.mp4")


# the object's window, [2.5 s, 5.5 s], from the key frame at 2 s: 2.00 s to 5.48 s
CUT_FRAMES = 88


def test_an_event_clip_is_cut_to_its_window_and_made_again_when_it_grows(recorded: Recorded, tmp_path: Path) -> None:
    root = tmp_path / "ring"
    shutil.copytree(recorded.root, root)
    oid, t0_ns = recorded.object_id, int(recorded.t0 * 1e9)
    files = kept_files(root, oid)
    assert catalog.kept_clip(root, oid).window == (int((recorded.t0 + 3.5) * 1e9) - 10**9,
                                                    int((recorded.t0 + 4.5) * 1e9) + 10**9)
    cache = ClipCache(tmp_path / "cache")
    cut = event_clip(root, oid, cache)
    codec, frames, span = opened(cut)
    assert codec == "h264" and faststart(cut)
    assert frames == CUT_FRAMES and abs(span - 3.5) <= FRAME_S  # the two whole files hold 4 s

    # the object seen for longer, its window still within the same two files: a new cut, not the cached one
    index = Index(root)
    try:
        assert index.extend_keep(oid, t0_ns + 5_900_000_000, {"id": oid, "object_id": oid})
    finally:
        index.close()
    assert kept_files(root, oid) == files
    longer = event_clip(root, oid, cache)
    assert longer != cut and opened(longer)[1] == CUT_FRAMES + 10  # to 5.88 s

    # a kept clip the index has no window for plays whole, as before windows were read
    with sqlite3.connect(root / "index.db") as db:
        db.execute("DELETE FROM keeps WHERE event_id = ?", (oid,))
    assert catalog.kept_clip(root, oid) == catalog.KeptClip(files, None)
    assert opened(event_clip(root, oid, cache))[1] == 4 * FPS


def test_cache_serves_the_same_file_and_never_a_partial_one(recorded: Recorded, tmp_path: Path) -> None:
    cache = ClipCache(tmp_path / "cache", max_bytes=1 << 30)
    first = event_clip(recorded.root, recorded.object_id, cache)
    before = first.stat().st_mtime_ns
    assert event_clip(recorded.root, recorded.object_id, cache) == first and first.stat().st_mtime_ns == before
    assert opened(first)[1] == CUT_FRAMES
    with pytest.raises(LookupError):
        event_clip(recorded.root, "nope", cache)

    t0 = recorded.t0
    clip = range_clip(recorded.root, "door", t0 + 2.001, t0 + 3.999, cache)
    assert range_clip(recorded.root, "door", t0 + 2.001, t0 + 3.999, cache) == clip and clip != first
    assert opened(clip)[1] == 2 * FPS

    # while a clip is being made its name is not there; a maker that fails leaves nothing
    seen: list[bool] = []

    def failing(tmp: Path) -> None:
        tmp.write_bytes(b"half an mp4")
        seen.append(cache.path("broken").exists())
        raise OSError("disk full")

    with pytest.raises(OSError):
        cache.get("broken", failing)
    assert seen == [False] and not cache.path("broken").exists()
    assert sorted(p.name for p in cache.dir.iterdir()) == sorted([first.name, clip.name])

    # two requests for one key at once: made once
    calls: list[int] = []
    gate = threading.Event()

    def slow(tmp: Path) -> None:
        calls.append(1)
        assert gate.wait(30)
        tmp.write_bytes(b"x" * 100)

    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("same", slow))) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while not calls:  # the first maker has started; the second waits behind it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    gate.set()
    for t in threads:
        t.join(30)
    assert len(calls) == 1 and results == [cache.path("same")] * 2


def test_cache_evicts_the_oldest_beyond_its_budget(tmp_path: Path) -> None:
    cache = ClipCache(tmp_path / "cache", max_bytes=250)
    made = []
    for i, key in enumerate(("a", "b", "c")):
        made.append(cache.get(key, lambda tmp: tmp.write_bytes(b"v" * 100)))
        os.utime(made[-1], ns=(10**18 + i, 10**18 + i))  # made in this order, whatever the clock's grain
    # 300 bytes > 250: the oldest ("a") went when "c" came
    assert [p.exists() for p in made] == [False, True, True]
    (tmp_path / "cache" / ".x.dead.tmp.mp4").write_bytes(b"left by a killed maker")
    ClipCache(tmp_path / "cache", max_bytes=250)
    assert not (tmp_path / "cache" / ".x.dead.tmp.mp4").exists()


def test_a_preview_is_the_key_frame_at_or_before_the_time_decoded_once(recorded: Recorded) -> None:
    t0 = recorded.t0
    before = previews.decodes
    still = previews.preview_jpeg(recorded.root, "door", t0 + 2.2)
    assert pixels.jpeg_size(still) == (240, 180)  # 64x48 at 240 px wide
    # the same key frame (2 s) for any time of its second: from the cache, not decoded again
    assert previews.preview_jpeg(recorded.root, "door", t0 + 2.9) == still and previews.decodes == before + 1
    assert previews.preview_jpeg(recorded.root, "door", t0 + 3.1) != still
    # the file still being written (17-19 s) as far as its frames on disk go
    assert pixels.jpeg_size(previews.preview_jpeg(recorded.root, "door", t0 + 17.2)) == (240, 180)
    for camera, ts in (("door", t0 + 12), ("door", t0 - 1), ("yard", t0 + 60), ("nobody", t0 + 1)):
        with pytest.raises(LookupError):
            previews.preview_jpeg(recorded.root, camera, ts)
