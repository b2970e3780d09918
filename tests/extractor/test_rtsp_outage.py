"""A live camera that goes away comes back within seconds, and is never ``failed``: a real
GStreamer RTSP server (tests/rtsp_server.py) frozen with SIGSTOP for 60 s (the issue's case:
FFmpeg says "Invalid data" when such a server does not answer), and one killed and started
again. What the extractor says is received on a PULL socket bound here."""

from __future__ import annotations

import time

import pytest

from camwire.common import wire
from conftest import Pull, free_port
from rtsp import RtspServer, needs_rtsp

pytestmark = needs_rtsp

FROZEN_S = 60.0  # the outage: long enough for every backoff and timeout to come into play


@pytest.fixture
def pull(zctx):
    return Pull(zctx)


@pytest.fixture
def rtsp(sample_clip):
    server = RtspServer(free_port(), sample_clip)
    yield server
    server.stop()


def state(name: str):
    return lambda m: isinstance(m, wire.Status) and m.camera == "door" and m.state == name


def listen(pull: Pull, seconds: float) -> None:
    """Keep every message that comes for ``seconds``: the outage itself lasts this long."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if pull.sock.poll(int(left * 1000) + 1):
            parts = pull.sock.recv_multipart()
            pull.seen.append(wire.peek_frame(parts) if len(parts) == 2 else wire.unpack(parts[0]))


def states(pull: Pull, since: int = 0, until: int | None = None) -> list[wire.Status]:
    return [m for m in pull.seen[since:until] if isinstance(m, wire.Status)]


def test_a_frozen_rtsp_server_is_offline_then_online_soon_after_it_resumes(daemons, pull, rtsp) -> None:
    rtsp.start()
    daemons.start("extractor", "extractor", "--camera", "door", "--source", rtsp.url, "--push", pull.addr,
                  "--fps", "2")
    pull.until(state("online"))
    rtsp.freeze()
    frozen, frozen_at = len(pull.seen), time.monotonic()
    stalled = pull.until(state("offline"), since=frozen)
    assert stalled.reason == "stalled: no video for 5s"  # noticed by the stall watch, not a long socket timeout
    listen(pull, frozen_at + FROZEN_S - time.monotonic())
    rtsp.resume()
    resumed_at, resumed = time.monotonic(), len(pull.seen)
    back = pull.until(state("online"), since=resumed)
    took = time.monotonic() - resumed_at
    print(f"\nonline {took:.2f}s after SIGCONT (frozen {FROZEN_S:g}s)")
    during = states(pull, frozen, resumed)
    assert {s.state for s in during} == {"offline"}  # offline all along the freeze
    assert max(s.attempts for s in during) >= 3  # retried all along, each attempt a timeout
    # a timeout, not "not a video": FFmpeg's 10 s while the frozen server's kernel still queues
    # connections, then the knock's (extractor.camera.knock) once its accept queue is full
    assert during[-1].last_error.startswith(("no answer within 10s", "no answer within 2s"))
    # the attempt under way when it resumed, or the next one, brought it back: no round failed after
    after = states(pull, resumed)
    assert after[-1] is back and sum(s.state == "offline" for s in after) <= 1
    assert back.reconnects >= 3 and back.attempts == 0
    assert not [s for s in pull.statuses() if s.state == "failed"]
    assert daemons.stop("extractor") == 0
    stats = daemons.stats("extractor")["door"]
    assert "InvalidDataError" in stats["source_errors"]  # FFmpeg's words for the timeout, counted, yet never failed


def test_a_killed_rtsp_server_started_again_is_online_within_seconds(daemons, pull, rtsp) -> None:
    rtsp.start()
    daemons.start("extractor", "extractor", "--camera", "door", "--source", rtsp.url, "--push", pull.addr,
                  "--fps", "2")
    pull.until(state("online"))
    rtsp.stop()
    mark = len(pull.seen)
    pull.until(state("offline"), since=mark)
    pull.until(lambda m: state("offline")(m) and m.attempts >= 3, since=mark)  # refused, retried
    rtsp.start()
    started_at, started = time.monotonic(), len(pull.seen)
    back = pull.until(state("online"), since=started)
    print(f"\nonline {time.monotonic() - started_at:.2f}s after the server was listening again")
    # a camera online a moment ago is retried at most 2 s apart: the next attempt or the one after finds it
    assert sum(s.state == "offline" for s in states(pull, started)) <= 1 and back.attempts == 0
    assert not [s for s in pull.statuses() if s.state == "failed"]
    assert daemons.stop("extractor") == 0
