"""recorder.catalog and the names in recorder.segment: what another daemon reads of a recorder's
DIR, over real index files written by recorder.index (the web console's use of it, over a real
ring, is tests/web/test_recordings.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from camwire.recorder import catalog
from camwire.recorder.index import Index, Keep, Totals
from camwire.recorder.segment import name_order, segment_name, start_of

T0 = 1_795_000_000_123_000_000  # a capture time on a millisecond
S = 1_000_000_000


def test_a_segment_name_says_its_start() -> None:
    assert segment_name(T0).endswith("Z.mkv") and segment_name(T0, 2).endswith("Z-2.mkv")
    for n in (0, 1, 12):
        assert start_of(Path(segment_name(T0, n))) == T0
        assert start_of(Path("kept/2026-11-21/ev/door-" + segment_name(T0, n))) == T0  # a kept link
    names = [Path(segment_name(T0 + S)), Path(segment_name(T0, 10)), Path(segment_name(T0, 2)), Path(segment_name(T0))]
    assert sorted(names, key=name_order) == [names[3], names[2], names[1], names[0]]
    with pytest.raises(ValueError):
        start_of(Path("clip.mp4"))  # a name the ring never makes


def written(root: Path) -> Index:
    """door: 0-2 s and 2-4 s closed, 4 s on open; yard: 1-3 s closed; an event kept of door's first."""
    index = Index(root)
    for camera, start, end in (("door", 0, 2), ("door", 2, 4), ("door", 4, None), ("yard", 1, 3)):
        seg = index.open_segment(camera, T0 + start * S, f"{camera}/{segment_name(T0 + start * S)}", "lz4")
        if end is not None:
            index.close_segment(seg, T0 + end * S, 1000, 50, 0)
    index.add_keep(Keep("ev", "door", T0, T0 + S, "kept/ev", False, {"id": "ev"}))
    index.mark_kept("ev", 1, "kept/ev/door-" + segment_name(T0))
    return index


def test_reads_what_the_recorder_wrote(tmp_path: Path) -> None:
    written(tmp_path).close()
    every = catalog.segments(tmp_path, None, None, None)
    assert [(s.camera, (s.start_ns - T0) // S, s.closed) for s in every] == [
        ("door", 0, True), ("door", 2, True), ("door", 4, False), ("yard", 1, True)]
    # [3 s, 5 s): door's second file, its open one (it may reach there), yard's up to 3 s is out
    window = catalog.segments(tmp_path, None, T0 + 3 * S, T0 + 5 * S)
    assert [(s.camera, (s.start_ns - T0) // S) for s in window] == [("door", 2), ("door", 4)]
    assert [s.camera for s in catalog.segments(tmp_path, "yard", None, T0 + S + 1)] == ["yard"]
    assert catalog.segments(tmp_path, "yard", None, T0 + S) == []
    assert catalog.totals(tmp_path) == Totals(4, 3000, 1)
    assert catalog.kept_ids(tmp_path) == {"ev"}
    assert catalog.kept_files(tmp_path, "ev") == []  # its row, but no file on disk
    (tmp_path / "kept/ev").mkdir(parents=True)
    (tmp_path / "kept/ev" / ("door-" + segment_name(T0))).write_bytes(b"")
    assert catalog.kept_files(tmp_path, "ev") == [tmp_path / "kept/ev" / ("door-" + segment_name(T0))]
    # with the window it was kept for, which a clip of it is cut to
    assert catalog.kept_clip(tmp_path, "ev") == catalog.KeptClip(catalog.kept_files(tmp_path, "ev"), (T0, T0 + S))


def test_reads_nothing_and_writes_nothing_without_an_index(tmp_path: Path) -> None:
    assert catalog.segments(tmp_path, None, None, None) == []
    assert catalog.kept_ids(tmp_path) == set() and catalog.kept_files(tmp_path, "ev") == []
    assert catalog.kept_clip(tmp_path, "ev") == catalog.KeptClip([], None)
    assert catalog.totals(tmp_path) == Totals(0, 0, 0)
    assert list(tmp_path.iterdir()) == []
    sqlite3.connect(tmp_path / "index.db").close()  # there, but the recorder has made no tables yet
    assert catalog.segments(tmp_path, "door", 0, T0) == [] and catalog.totals(tmp_path) == Totals(0, 0, 0)
    assert catalog.kept_clip(tmp_path, "ev") == catalog.KeptClip([], None)


def test_an_open_segment_without_a_readable_file_ends_at_its_start(tmp_path: Path) -> None:
    written(tmp_path).close()
    (open_seg,) = [s for s in catalog.segments(tmp_path, "door", None, None) if not s.closed]
    assert catalog.open_end(tmp_path, open_seg) == open_seg.start_ns  # no file yet
    (tmp_path / open_seg.path).parent.mkdir(parents=True)
    (tmp_path / open_seg.path).write_bytes(b"not matroska yet")  # its header not written yet
    assert catalog.open_end(tmp_path, open_seg) == open_seg.start_ns
