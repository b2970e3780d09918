"""One account of every frame, over real sockets: a ventilator, a sink and a worker as processes,
and a hand-driven worker (a DEALER) that takes frames, goes silent as a cut link does, and answers
one of them after it was counted lost. The account (common.frame_account) is read where the
operator reads it: status.db and ``camwire status --json``."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import zmq

from camwire.common import wire
from camwire.common.frame_account import BUCKETS
from conftest import ROOT, free_port, scrape, value, wait_status
from console import start_console

W, H = 64, 48


def live_frame(seq: int) -> list[bytes]:
    header = wire.FrameHeader(camera="cam", seq=seq, ts_ns=time.time_ns(), pts=None, width=W, height=H)
    return wire.frame_parts(header, bytes(W * H * 3))


def until(sock: zmq.Socket, predicate, beat: bool = True, timeout: float = 60.0) -> list[bytes]:
    """The first message to the hand-driven worker that matches; it stays alive meanwhile
    (a heartbeat every few hundred ms) unless ``beat`` is False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if beat:
            sock.send(wire.pack(wire.Heartbeat(worker="fake")))
        if sock.poll(300):
            parts = sock.recv_multipart()
            if predicate(parts):
                return parts
    raise AssertionError("the ventilator never sent what was awaited")


def is_frame(parts: list[bytes]) -> bool:
    return len(parts) == 2


def account_in(parts: list[bytes]) -> wire.PoolAccount | None:
    msg = wire.unpack(parts[0]) if len(parts) == 1 else None
    return msg.accounts.get("cam") if isinstance(msg, wire.Workers) else None


def test_a_cut_link_loses_its_frames_once_and_a_late_answer_counts_late_only(pipeline_factory, daemons, zctx,
                                                                             browser) -> None:
    vent_port, sink_port = free_port(), free_port()
    p = pipeline_factory(heartbeat_timeout=1.0, vent_args=("--metrics-port", str(vent_port)),
                         sink_args=("--metrics-port", str(sink_port)))
    fake = zctx.socket(zmq.DEALER)
    fake.setsockopt(zmq.LINGER, 0)
    fake.setsockopt(zmq.IDENTITY, b"fake")
    fake.connect(p.backend)
    fake.send(wire.pack(wire.Ready(worker="fake", credits=3)))
    # known once the pool's report comes to it (it is the only worker, so it carries it)
    until(fake, lambda parts: len(parts) == 1 and isinstance(wire.unpack(parts[0]), wire.Workers))

    extractor = zctx.socket(zmq.PUSH)
    extractor.setsockopt(zmq.LINGER, 0)
    extractor.connect(p.frontend)
    taken = []
    for seq in range(3):  # one at a time: each taken before the next comes
        extractor.send_multipart(live_frame(seq))
        taken.append(wire.peek_frame(until(fake, is_frame)).seq)
    assert taken == [0, 1, 2]
    for seq in (3, 4):  # no credit left: 3 waits, and 4 takes its place
        extractor.send_multipart(live_frame(seq))
    account = account_in(until(fake, lambda parts: (a := account_in(parts)) is not None and a.received == 5))
    assert account == wire.PoolAccount(received=5, superseded=1, waiting=1, in_flight=3)

    # the link is cut (the fake says nothing more); a real worker takes the frame that waits
    p.worker("worker-1", "covered")
    row = wait_status(p.data_dir / "status.db", "cam", lambda r: (r["pool"] or {}).get("worker_lost") == 3)
    assert row["pool"] == {"received": 5, "superseded": 1, "unserved": 0, "worker_lost": 3, "deadline": 0,
                           "processed": 1, "late": 0, "waiting": 0, "in_flight": 0}

    # 30 s later in the story: the link is back, and the fake answers frame 0
    fake.send(wire.pack(wire.Ready(worker="fake", credits=0, done=[("cam", 0)])))
    extractor.send(wire.pack(wire.Status(camera="cam", state="online", ts_ns=time.time_ns(), decoded=7, sent=5,
                                         drops={"dropped/hwm": 2})))
    row = wait_status(p.data_dir / "status.db", "cam", lambda r: (r["pool"] or {}).get("late") == 1 and r["sent"])
    pool = row["pool"]
    assert pool == {"received": 5, "superseded": 1, "unserved": 0, "worker_lost": 2, "deadline": 0,
                    "processed": 1, "late": 1, "waiting": 0, "in_flight": 0}
    assert pool["received"] == sum(pool[b] for b in BUCKETS) + pool["waiting"] + pool["in_flight"]
    assert (row["decoded"], row["sent"], json.loads(row["drops"])) == (7, 5, {"dropped/hwm": 2})

    shown = subprocess.run([sys.executable, "-m", "camwire", "status", "--dir", str(p.data_dir), "--json"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    cam = next(c for c in json.loads(shown.stdout)["cameras"] if c["camera"] == "cam")
    assert cam["pool"] == pool and cam["sent"] == 5
    table = subprocess.run([sys.executable, "-m", "camwire", "status", "--dir", str(p.data_dir)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    line = next(x for x in table.stdout.splitlines() if x.startswith("cam ") and "dropped/hwm 2" in x)
    # superseded, unserved, worker lost, deadline, processed, late, waiting, in flight
    assert line.split()[-8:] == ["1", "0", "2", "0", "1", "1", "0", "0"]
    assert "WORKER LOST" in table.stdout and "LATE" in table.stdout

    # the metrics, both where the account is kept and where it is shown (gauges: late moved out of worker_lost)
    vent = scrape(vent_port)
    assert {b: value(vent, "camwire_ventilator_frames", camera="cam", bucket=b) for b in ("worker_lost", "late")} \
        == {"worker_lost": 2, "late": 1}
    sink = scrape(sink_port)
    assert {b: value(sink, "camwire_sink_frames", camera="cam", bucket=b)
            for b in ("decoded", "sent", "dropped/hwm", "superseded", "processed", "late")} \
        == {"decoded": 7, "sent": 5, "dropped/hwm": 2, "superseded": 1, "processed": 1, "late": 1}

    # the console's system page: the same account, a row per camera, a column per bucket
    url = start_console(daemons, "--data-dir", str(p.data_dir), "--events", str(p.events_file))
    page = browser.new_page()
    page.goto(url + "/#/system")
    page.wait_for_function("() => document.querySelector('table.sys-frames tbody td')?.textContent === 'cam'",
                           timeout=30_000)
    texts = "els => els.map((e) => e.textContent)"  # as written, not as the stylesheet shows them
    heads = page.locator("table.sys-frames thead th").evaluate_all(texts)
    cells = page.locator("table.sys-frames tbody tr").first.locator("td").evaluate_all(texts)
    shown_row = dict(zip(heads, cells))
    assert shown_row["camera"] == "cam" and shown_row["decoded"] == "7" and shown_row["sent"] == "5"
    assert (shown_row["worker lost"], shown_row["late"], shown_row["superseded"]) == ("2", "1", "1")
    assert "dropped/hwm 2" in shown_row["extractor drops"]
