"""The console's review marks reach a real sink on its PULL and are kept in its ``--data-dir``
(sink.store.reviews): for everyone or for one user, taken back when unmarked; a malformed
``reviewed`` message is counted and dropped, and a full disk costs the mark, never the sink."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import msgpack
import zmq

from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter
from camwire.sink.store.disk import WriteErrors
from camwire.sink.store.reviews import FILE, Reviews, read_reviewed
from conftest import tcp


def rows(path: Path) -> set[tuple[str, str, str]]:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return {tuple(r) for r in db.execute("SELECT object_id, user, by FROM reviews")}
        finally:
            db.close()
    except sqlite3.OperationalError:
        return set()  # not made yet


def await_rows(path: Path, want: set, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while rows(path) != want:
        assert time.monotonic() < deadline, rows(path)
        time.sleep(0.05)  # SQLite has no change notification to await


def test_a_sink_keeps_review_marks_and_drops_a_malformed_one(tmp_path: Path, daemons, zctx) -> None:
    bind, data = tcp(), tmp_path / "data"
    daemons.start("sink", "sink", "--bind", bind, "--events", str(tmp_path / "events.jsonl"),
                  "--data-dir", str(data))
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(bind)
    push.send(msgpack.packb({"v": 1, "kind": "reviewed", "object_ids": [], "by": "console"}))  # no ids: malformed
    push.send(msgpack.packb({"v": 1, "kind": "reviewed", "object_ids": ["a"], "by": ""}))  # nobody: malformed
    push.send(wire.pack(wire.Reviewed(object_ids=["a", "b"], by="console 127.0.0.1")))
    push.send(wire.pack(wire.Reviewed(object_ids=["c"], by="console 127.0.0.1", user="alice")))
    db = data / FILE
    await_rows(db, {("a", "", "console 127.0.0.1"), ("b", "", "console 127.0.0.1"), ("c", "alice", "console 127.0.0.1")})
    assert read_reviewed(db, ["a", "b", "c", "d"]) == {"a", "b"}  # alice's mark is hers
    assert read_reviewed(db, ["a", "c", "d"], user="alice") == {"a", "c"}

    push.send(wire.pack(wire.Reviewed(object_ids=["b"], by="console 127.0.0.1", reviewed=False)))
    await_rows(db, {("a", "", "console 127.0.0.1"), ("c", "alice", "console 127.0.0.1")})
    push.close()
    assert daemons.stop("sink") == 0
    stats = daemons.stats("sink")
    assert sum(stats["malformed"].values()) == 2
    assert stats["reviews"] == {"kept": 3}
    log = (tmp_path / "sink.log").read_text()
    assert '"by": "console 127.0.0.1"' in log or '"by":"console 127.0.0.1"' in log  # who marked them is logged


def test_marks_are_bounded_and_a_refusing_disk_is_counted(tmp_path: Path) -> None:
    counters = Counters()

    class Log:
        def __getattr__(self, _name):
            return lambda *a, **k: None

    reviews = Reviews(tmp_path / FILE, WriteErrors(counters, RepeatLimiter(Log())), max_rows=3)
    for i in range(5):
        assert reviews.mark(wire.Reviewed(object_ids=[f"o{i}"], by="t"), now=1000.0 + i)
    assert {r[0] for r in rows(tmp_path / FILE)} == {"o2", "o3", "o4"}  # the oldest went
    reviews.close()

    (tmp_path / "file").write_text("")  # a file where the folder would be: nothing can be made under it
    refused = Reviews(tmp_path / "file" / FILE, WriteErrors(counters, RepeatLimiter(Log())))
    assert not refused.mark(wire.Reviewed(object_ids=["x"], by="t"))
    assert counters.snapshot()["write_errors"]["reviews"] == 2  # opening at start, and again at the mark
    assert not Reviews(None).mark(wire.Reviewed(object_ids=["x"], by="t"))  # no --data-dir: nothing kept
