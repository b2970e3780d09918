"""sink.served.read_after: the events file and its rotated ones read by a stateless cursor, as a
console on another host follows them: whole lines only, oldest file first, on through a rotation,
a truncated file read again from its start, a cursor to a file gone starting over."""

from __future__ import annotations

import os
from pathlib import Path

from camwire.sink.served import read_after, read_snapshot


def _lines(answer: dict) -> list[bytes]:
    return [line for line in answer["lines"].split(b"\n") if line]


def test_lines_follow_through_a_rotation(tmp_path: Path) -> None:
    live = tmp_path / "events.jsonl"
    (tmp_path / "events.jsonl.2").write_bytes(b"a\nb\n")
    (tmp_path / "events.jsonl.1").write_bytes(b"c\nd\nhalf")  # a last line never finished
    live.write_bytes(b"e\nf")
    first = read_after(live, 3, None, 1 << 20)
    assert _lines(first) == [b"a", b"b", b"c", b"d", b"e"] and not first["next"]
    again = read_after(live, 3, tuple(first["cursor"]), 1 << 20)
    assert _lines(again) == []
    with live.open("ab") as f:
        f.write(b"\ng\n")
    more = read_after(live, 3, tuple(again["cursor"]), 1 << 20)
    assert _lines(more) == [b"f", b"g"]
    # rotated: the live file becomes .1, a new one starts; the rest of the old one comes first
    with live.open("ab") as f:
        f.write(b"h\n")
    os.replace(tmp_path / "events.jsonl.1", tmp_path / "events.jsonl.2")
    os.replace(live, tmp_path / "events.jsonl.1")
    live.write_bytes(b"i\n")
    after = read_after(live, 3, tuple(more["cursor"]), 1 << 20)
    assert _lines(after) == [b"h", b"i"]


def test_a_budget_splits_a_backlog_and_says_more_waits(tmp_path: Path) -> None:
    live = tmp_path / "events.jsonl"
    live.write_bytes(b"".join(b"line %03d\n" % i for i in range(100)))
    got, cursor, rounds = [], None, 0
    while True:
        answer = read_after(live, 3, cursor, 100)
        got += _lines(answer)
        cursor = tuple(answer["cursor"])
        rounds += 1
        if not answer["next"]:
            break
    assert got == [b"line %03d" % i for i in range(100)] and rounds > 5


def test_a_truncated_file_is_read_again_and_a_lost_cursor_starts_over(tmp_path: Path) -> None:
    live = tmp_path / "events.jsonl"
    live.write_bytes(b"a\nb\nc\n")
    cursor = tuple(read_after(live, 3, None, 1 << 20)["cursor"])
    live.write_bytes(b"x\n")  # copytruncate, then a new line
    assert _lines(read_after(live, 3, cursor, 1 << 20)) == [b"x"]
    assert _lines(read_after(live, 3, (0, 0, 5), 1 << 20)) == [b"x"]  # a file no longer there


def test_only_snapshots_are_sent(tmp_path: Path) -> None:
    (tmp_path / "snapshots").mkdir()
    (tmp_path / "snapshots" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    (tmp_path / "status.db").write_bytes(b"secret")
    assert read_snapshot(tmp_path, "snapshots/a.jpg") == b"\xff\xd8jpeg"
    for name in ("status.db", "snapshots/../status.db", "snapshots", "", "snapshots/none.jpg"):
        try:
            read_snapshot(tmp_path, name)
        except LookupError:
            continue
        raise AssertionError(f"{name!r} was sent")


def test_a_line_longer_than_an_answer_is_skipped_not_read_forever(tmp_path: Path) -> None:
    live = tmp_path / "events.jsonl"
    live.write_bytes(b"a\n" + b"\0" * 5000 + b"\nb\n")  # a power cut's tail, then the sink went on
    got, cursor = [], None
    for _ in range(10):
        answer = read_after(live, 3, cursor, 1024)
        got += _lines(answer)
        cursor = tuple(answer["cursor"])
        if not answer["next"]:
            break
    assert got == [b"a", b"b"]
