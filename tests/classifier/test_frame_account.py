"""One account of every frame (common.frame_account), kept by the dispatcher with no sockets:
each delivery in exactly one final bucket, a late answer moving a lost frame to ``late`` only,
and ``received == sum(buckets) + waiting + in flight`` after any sequence of events."""

from __future__ import annotations

import random

import msgspec

from camwire.classifier.dispatch import Dispatcher
from camwire.common import wire
from camwire.common.frame_account import BUCKETS, FrameAccounts, open_frames
from camwire.common.wire import FrameHeader


def frame(camera: str, seq: int, live: bool = True) -> FrameHeader:
    return FrameHeader(camera=camera, seq=seq, ts_ns=seq, pts=None, width=2, height=2, live=live)


def drain(d: Dispatcher, now: float = 0.0) -> list[tuple[bytes, str, int]]:
    out = []
    while (item := d.next_dispatch(now)) is not None:
        out.append((item[0], item[1].header.camera, item[1].header.seq))
    return out


def balanced(d: Dispatcher) -> dict[str, wire.PoolAccount]:
    accounts = d.account()
    for camera, a in accounts.items():
        assert open_frames(a) == a.waiting + a.in_flight, (camera, a)
    return accounts


def test_each_frame_lands_in_one_bucket_and_a_late_answer_moves_it_to_late_only() -> None:
    d = Dispatcher(frame_deadline=10.0)
    d.ready(b"w1", "w1", 3, [], now=0)
    for seq in range(3):
        d.offer(frame("a", seq), [])
        assert drain(d) == [(b"w1", "a", seq)]
    for seq in (3, 4):  # no credit left: 3 waits, then 4 takes its place
        d.offer(frame("a", seq), [])
    assert balanced(d)["a"] == wire.PoolAccount(received=5, superseded=1, waiting=1, in_flight=3)

    d.ready(b"w1", "w1", 0, [("a", 0)], now=1)  # one answered in time
    assert d.forget(b"w1", "heartbeat") == [("a", 1), ("a", 2)]  # a cut link: the two it held are lost
    assert balanced(d)["a"] == wire.PoolAccount(received=5, superseded=1, worker_lost=2, processed=1, waiting=1)

    d.ready(b"w1", "w1", 1, [("a", 1)], now=30)  # back 30 s later, answering one of them
    assert drain(d, now=30) == [(b"w1", "a", 4)]
    a = balanced(d)["a"]
    assert a == wire.PoolAccount(received=5, superseded=1, worker_lost=1, processed=1, late=1, in_flight=1)
    d.ready(b"w1", "w1", 0, [("a", 1)], now=31)  # the same answer twice: counted once
    assert balanced(d)["a"] == a
    assert d.counters.get("late", "answered") == 1 and d.counters.get("late", "unknown_done") == 1

    assert [key for _, key in d.overdue(now=50)] == [("a", 4)]  # held past its deadline
    d.ready(b"w1", "w1", 0, [("a", 4)], now=51)  # then answered: late, no longer deadline
    assert balanced(d)["a"] == wire.PoolAccount(received=5, superseded=1, worker_lost=1, processed=1, late=2)


def test_unserved_frames_and_a_camera_with_two_detectors_count_per_delivery() -> None:
    d = Dispatcher(routes={"two": ["x", "y"]})
    d.ready(b"wx", "wx", 1, [], now=0, detector="x")  # nobody serves y
    d.offer(frame("two", 0), [])
    assert drain(d) == [(b"wx", "two", 0)]
    d.ready(b"wx", "wx", 0, [("two", 0)], now=1, detector="x")
    assert balanced(d)["two"] == wire.PoolAccount(received=2, unserved=1, processed=1)


def test_the_identity_holds_after_any_sequence_of_events() -> None:
    rng = random.Random(7)
    d = Dispatcher(frame_deadline=5.0, routes={"r": ["x"]})
    held: dict[bytes, list[tuple[str, int]]] = {}
    lost: list[tuple[bytes, tuple[str, int]]] = []
    seqs = {"a": 0, "f": 0, "r": 0}
    for step in range(3000):
        now = step * 0.1
        what = rng.random()
        if what < 0.4:
            camera = rng.choice(list(seqs))
            if d.accepting():
                d.offer(frame(camera, seqs[camera], live=camera != "f"), [])
                seqs[camera] += 1
        elif what < 0.7:
            ident = rng.choice([b"w1", b"w2", b"wx"])
            done = held.pop(ident, [])[: rng.randint(0, 3)]
            if lost and rng.random() < 0.3:  # an answer from beyond a loss
                done.append(lost.pop(rng.randrange(len(lost)))[1])
            d.ready(ident, ident.decode(), rng.randint(0, 2), done, now, detector="x" if ident == b"wx" else "")
        elif what < 0.75:
            ident = rng.choice([b"w1", b"w2", b"wx"])
            lost += [(ident, key) for key in d.forget(ident, "heartbeat")]
        else:
            lost += [(w.ident, key) for w, key in d.overdue(now)]
        for ident, camera, seq in drain(d, now):
            held.setdefault(ident, []).append((camera, seq))
        for ident in list(held):  # what each worker holds now, as the dispatcher sees it
            w = d.workers.get(ident)
            held[ident] = [k for k in held[ident] if w is not None and k in w.in_flight]
    accounts = balanced(d)
    assert sum(a.late for a in accounts.values()) > 0 and sum(a.worker_lost for a in accounts.values()) > 0
    assert sum(a.superseded for a in accounts.values()) > 0 and sum(a.deadline for a in accounts.values()) > 0


def test_an_old_workers_message_still_decodes_and_the_accounts_are_bounded() -> None:
    old = msgspec.msgpack.encode({"v": 1, "kind": "workers", "ts_ns": 1, "workers": [], "backlog": {}})
    assert wire.unpack(old).accounts == {}
    old_status = msgspec.msgpack.encode({"v": 1, "kind": "status", "camera": "a", "state": "online", "ts_ns": 1})
    assert (wire.unpack(old_status).decoded, wire.unpack(old_status).sent) == (0, 0)
    accounts = FrameAccounts(max_cameras=2, remembered=3)
    for camera in ("a", "b", "c"):
        accounts.received(camera)
    assert set(accounts.report({}, {})) == {"a", "b"}
    for seq in range(5):
        accounts.lost("", "a", seq, "worker_lost")
    assert not accounts.answered_late("", "a", 0)  # past what is remembered: not moved
    assert accounts.answered_late("", "a", 4)
    assert set(BUCKETS) <= set(wire.PoolAccount.__struct_fields__)
