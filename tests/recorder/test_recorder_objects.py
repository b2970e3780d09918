"""One kept clip per tracked object, stretched by its updates and end; objects seen at the same time
share the ring's files as hard links. A real recorder process; the test stands in for the
extractor and the sink (recorder_feed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from camwire.common import wire
from camwire.common.ids import event_id
from recorder_feed import Feed, closed_rows, rows, start_recorder

S = 10**9


def _object(object_id: str, phase: str, first_ns: int, last_ns: int, n: int) -> wire.Event:
    return wire.Event(id=event_id(last_ns, "cam", "object", n), type="object", camera="cam", ts=last_ns / 1e9,
                      object_id=object_id, phase=phase, label="person", score=0.8, top_score=0.9,
                      first_seen=first_ns / 1e9, last_seen=last_ns / 1e9, box=(1.0, 2.0, 3.0, 4.0))


def _clips(root: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in root.glob("kept/*/*/event.json")}


def test_one_clip_per_tracked_object_over_first_to_last_seen(daemons, zctx, tmp_path: Path) -> None:
    root = tmp_path / "ring"
    feed, events = Feed(zctx), Feed(zctx)
    start_recorder(daemons, feed, root, "--events", events.addr, "--pre", "500ms", "--post", "500ms")
    feed.subscribed()
    events.subscribed()
    feed.play(lambda: len(closed_rows(root)) >= 2)

    a_first = time.time_ns()
    a = event_id(a_first, "cam", "object")
    events.send(wire.pack(_object(a, "start", a_first, a_first, 0)))
    b_first = time.time_ns()
    b = event_id(b_first, "cam", "object", 1)
    events.send(wire.pack(_object(b, "start", b_first, b_first, 1)))
    feed.play(lambda: _clips(root).get(a, {}).get("complete"))  # the start's window alone: complete
    n = len(closed_rows(root))
    feed.play(lambda: len(closed_rows(root)) >= n + 2)
    a_last = time.time_ns()  # seen again, seconds later: an update stretches the same clip
    events.send(wire.pack(_object(a, "update", a_first, a_last, 2)))
    events.send(wire.pack(_object(a, "end", a_first, a_last, 3)))
    n = len(closed_rows(root))
    feed.play(lambda: len(closed_rows(root)) >= n + 2)
    b_last = time.time_ns()
    events.send(wire.pack(_object(b, "end", b_first, b_last, 4)))
    feed.play(lambda: all(_clips(root).get(k, {}).get("complete") and _clips(root)[k]["phase"] == "end"
                          for k in (a, b)))
    assert daemons.stop("recorder") == 0

    clips = _clips(root)
    assert sorted(clips) == sorted([a, b])  # one folder per object, none per event
    assert daemons.stats("recorder")["events_kept"] == {"object": 2}
    for key, first, last in ((a, a_first, a_last), (b, b_first, b_last)):
        clip = clips[key]
        first, last = int(first / 1e9 * 1e9), int(last / 1e9 * 1e9)  # as the event carries them: seconds
        assert clip["window"] == {"from_ns": first - S // 2, "to_ns": last + S // 2}
        assert clip["object_id"] == key
        want = {f"cam-{Path(r['path']).name}" for r in rows(root)
                if r["start_ns"] < last + S // 2 and (r["end_ns"] or 0) > first - S // 2}
        assert set(clip["files"]) == want  # every segment the window overlaps, the update's too
    # the segments both objects were seen in: one file each, linked into both folders
    a_dir, b_dir = (next(root.glob(f"kept/*/{k}")) for k in (a, b))
    shared = set(clips[a]["files"]) & set(clips[b]["files"])
    assert shared
    assert all((a_dir / f).stat().st_ino == (b_dir / f).stat().st_ino for f in shared)
