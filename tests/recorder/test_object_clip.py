"""A kept clip, as the web console serves it, is cut to the window it was kept for: a tracked
object's ``[first seen - pre, last seen + post]``, another event's ``[t - pre, t + post]``, from the
key frame at or before its start, not the whole segments. A real extractor publishes a real H.264
clip (a key frame every second, B-frames) undecoded into a real recorder process writing 6 s
segments; the test stands in for the sink's PUB. Every MP4 is read with PyAV and each of its packets
placed on the recording's timeline by its bytes, so its first frame's capture time is known."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import av
import pytest

from camwire.common import wire
from camwire.common.ids import event_id
from camwire.recorder import catalog
from camwire.sample import make_sample_clip
from camwire.web.recordings import ClipCache, event_clip
from conftest import Pull, tcp
from recorder_feed import Feed, closed_rows, rows

FPS, SECONDS = 25, 12
FRAME_MS = 1000 // FPS
GOP_MS = 1000  # the clip's key frame interval
S = 10**9


@pytest.fixture(scope="module")
def gop25_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "gop25.mp4"
    make_sample_clip(path, seconds=SECONDS, gop=FPS)
    return path


def until(predicate: Callable[[], object], timeout: float = 60.0) -> None:
    """Wait for state on disk (the recorder's index, a kept folder): a file has no event to await."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def kept_json(root: Path, key: str) -> dict:
    found = list(root.glob(f"kept/*/{key}/event.json"))
    return json.loads(found[0].read_text()) if found else {}


@dataclass
class Timeline:
    """Every packet the recorder wrote, by the digest of its bytes, at its capture time (ms: the
    segment's start in the index plus the packet's time in the file); the key frames' times; and
    how far a frame is shown before one decoded ahead of it (B-frames), at most."""

    times: dict[str, int]
    keys: list[int]
    reorder_ms: int


def timeline(root: Path) -> Timeline:
    times: dict[str, int] = {}
    keys: list[int] = []
    reorder, newest = 0, 0
    for row in rows(root):
        with av.open(str(root / row["path"])) as c:
            for packet in c.demux(c.streams.video[0]):
                if packet.size and packet.pts is not None:
                    t = row["start_ns"] // 1_000_000 + int(packet.pts * packet.time_base * 1000)
                    times[hashlib.sha1(bytes(packet)).hexdigest()] = t
                    newest, reorder = max(newest, t), max(reorder, newest - t)
                    if packet.is_keyframe:
                        keys.append(t)
    return Timeline(times, sorted(keys), reorder)


def placed(mp4: Path, line: Timeline) -> list[int]:
    """The capture times (ms) of an MP4's frames, in order: its packets found on the timeline by
    their bytes, all at one offset from their times in the MP4."""
    with av.open(str(mp4)) as c:
        packets = [(int(p.pts * p.time_base * 1000), hashlib.sha1(bytes(p)).hexdigest())
                   for p in c.demux(c.streams.video[0]) if p.size]
    assert all(digest in line.times for _, digest in packets)  # copied, never re-encoded
    offsets = {line.times[digest] - t for t, digest in packets}
    assert len(offsets) == 1, f"the MP4's packets are not one stretch of the recording: offsets {offsets}"
    offset = offsets.pop()
    return sorted(offset + t for t, _ in packets)


def assert_cut(frames: list[int], window: dict[str, int], line: Timeline) -> None:
    """From the last key frame at or before the window's start to the window's end, with nothing
    missing between. The cut ends before the first packet, in decode order, at or after the end:
    the B-frames shown before that one but decoded after it end the clip up to ``reorder_ms`` early."""
    from_ms, to_ms = window["from_ns"] // 1_000_000, window["to_ns"] // 1_000_000
    assert frames[0] == max(k for k in line.keys if k <= from_ms)
    assert 0 <= from_ms - frames[0] < GOP_MS  # the Done-when: it starts within one GOP of first seen - pre
    assert 0 < to_ms - frames[-1] <= FRAME_MS + line.reorder_ms  # and ends at the window's end, not the file's
    assert frames == list(range(frames[0], frames[-1] + 1, FRAME_MS))


def _object(oid: str, phase: str, first: float, last: float, n: int) -> wire.Event:
    return wire.Event(id=event_id(int(last * 1e9), "cam", "object", n), type="object", camera="cam", ts=last,
                      object_id=oid, phase=phase, label="person", score=0.8, top_score=0.9, first_seen=first,
                      last_seen=last)


def test_kept_clips_are_cut_to_their_window(daemons, zctx, gop25_clip: Path, tmp_path: Path) -> None:
    root = tmp_path / "ring"
    events, pull, publish = Feed(zctx), Pull(zctx), tcp()
    daemons.start("recorder", "recorder", "--subscribe", publish, "--dir", str(root), "--segment", "6",
                  "--events", events.addr, "--pre", "1", "--post", "1")
    events.subscribed()
    daemons.start("extractor", "extractor", "--camera", "cam", "--source", str(gop25_clip), "--push", pull.addr,
                  "--publish", publish, "--publish-enc", "passthrough", "--publish-wait", "30")
    pull.until(lambda m: isinstance(m, wire.Eos))  # read all it pushes, to its end
    until(lambda: len(closed_rows(root)) == len(rows(root)) == 2
          and sum(r["frames"] for r in closed_rows(root)) == FPS * SECONDS)
    t0 = rows(root)[0]["start_ns"] / 1e9  # the first frame's capture time
    line = timeline(root)
    cache = ClipCache(tmp_path / "cache")

    # a person seen from 2.3 s to 2.8 s: [1.3 s, 3.8 s], from the key frame at 1 s, in the first 6 s file
    oid = event_id(int((t0 + 2.3) * 1e9), "cam", "object")
    events.send(wire.pack(_object(oid, "start", t0 + 2.3, t0 + 2.8, 0)))
    until(lambda: kept_json(root, oid).get("complete"))
    window = kept_json(root, oid)["window"]
    assert window["from_ns"] == int((t0 + 2.3) * 1e9) - S and window["to_ns"] == int((t0 + 2.8) * 1e9) + S
    files = catalog.kept_files(root, oid)
    assert len(files) == 1
    short = event_clip(root, oid, cache)
    frames = placed(short, line)
    assert_cut(frames, window, line)
    assert len(frames) < (6 * FPS) / 2  # well under the whole 6 s file it was cut from

    # seen again until 4.1 s: the same file, a longer window; the cache makes the longer clip
    events.send(wire.pack(_object(oid, "update", t0 + 2.3, t0 + 4.1, 1)))
    until(lambda: kept_json(root, oid).get("phase") == "update" and kept_json(root, oid)["complete"])
    window = kept_json(root, oid)["window"]
    assert window["to_ns"] == int((t0 + 4.1) * 1e9) + S
    assert catalog.kept_files(root, oid) == files
    longer = event_clip(root, oid, cache)
    assert longer != short and short.exists()
    frames = placed(longer, line)
    assert_cut(frames, window, line)
    assert frames[0] == placed(short, line)[0]

    # its end comes with a last seen past what is recorded: event.json says the new window at once,
    # pending; the clip so far runs from the same key frame over both files to the recording's end
    events.send(wire.pack(_object(oid, "end", t0 + 2.3, t0 + 30.0, 2)))
    until(lambda: kept_json(root, oid).get("phase") == "end")
    kept = kept_json(root, oid)
    assert not kept["complete"] and kept["window"]["to_ns"] == int((t0 + 30.0) * 1e9) + S
    until(lambda: len(catalog.kept_files(root, oid)) == 2)
    frames = placed(event_clip(root, oid, cache), line)
    assert frames[0] == placed(short, line)[0] and frames[-1] == max(line.times.values())

    # an event that is not an object (the lens covered at 6.2 s) keeps [5.2 s, 7.2 s] the same way,
    # across the two files
    t = t0 + 6.2
    covered = event_id(int(t * 1e9), "cam", "camera_covered")
    events.send(wire.pack(wire.Event(id=covered, type="camera_covered", camera="cam", ts=t)))
    until(lambda: kept_json(root, covered).get("complete"))
    window = kept_json(root, covered)["window"]
    assert window == {"from_ns": int(t * 1e9) - S, "to_ns": int(t * 1e9) + S}
    assert len(catalog.kept_files(root, covered)) == 2
    assert_cut(placed(event_clip(root, covered, cache), line), window, line)
    assert daemons.stop("recorder") == 0
