"""Every poll ends by its deadline, whatever the server does: a hostile local HTTP server
(tests/feed_server.py) trickles a body a byte a second, sends a header line without end, or
announces 2 GB and sends nothing. Each such answer would hold a poll for minutes to forever; the
hostile server records when the client hung up, and the extractor counts and reports it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest

from camwire.common import wire
from conftest import Pull
from camwire.extractor.poll import PollError, Poller
from feed_server import FeedServer, jpeg


def status_of(camera: str, state: str, since_attempts: int = 1) -> Callable[[wire.Message], bool]:
    return lambda m: (isinstance(m, wire.Status) and m.camera == camera and m.state == state
                      and m.attempts >= since_attempts)


def wait_ended(feed: FeedServer, path: str, timeout: float = 60.0) -> None:
    """Until the server saw the client hang up on ``path`` (its answer would go on far longer)."""
    deadline = time.monotonic() + timeout
    while not any(r.ended is not None for r in feed.requests(path)):
        assert time.monotonic() < deadline, f"{path}: the poll was not cut within {timeout}s"
        time.sleep(0.05)  # the server's log has no event to await


@pytest.mark.parametrize("how, kind", [("slow_body", "DeadlineExceeded"), ("endless_headers", "DeadlineExceeded"),
                                       ("huge_length", "TooLarge")])
def test_a_poll_of_a_hostile_server_ends_and_says_why(how: str, kind: str) -> None:
    with FeedServer() as feed:
        feed.hostile("/x.jpg", how)
        poller = Poller(feed.url("/x.jpg"), 0.5, 2.0)  # no read waits 2 s; the deadline: 0.5 + 3 x 2 s
        try:
            with pytest.raises(PollError) as err:
                poller.poll()
        finally:
            poller.close()
        wait_ended(feed, "/x.jpg")
    failure = err.value.failure
    assert failure.kind == kind and not failure.permanent
    if kind == "DeadlineExceeded":
        assert failure.reason == "no whole answer within 6.5s"
    else:
        assert failure.reason == "body of 1907 MiB, over 64 MiB"


@pytest.fixture
def pull(zctx):
    return Pull(zctx)


def test_hostile_feeds_hold_no_poll_past_its_deadline(daemons, pull, tmp_path: Path) -> None:
    with FeedServer() as feed:
        for how in ("slow_body", "endless_headers", "huge_length"):
            feed.hostile(f"/{how}.jpg", how)
        feed.put("/good.jpg", jpeg(90))
        cameras = "".join(f'[cameras.{name}]\nurl = "{feed.url(path)}"\npoll = "0.2s"\n\n' for name, path in [
            ("slow", "/slow_body.jpg"), ("headers", "/endless_headers.jpg"), ("huge", "/huge_length.jpg"),
            ("good", "/good.jpg")])
        config = tmp_path / "camwire.toml"
        config.write_text(f'[sockets]\nfrontend = "{pull.addr}"\n\n[extractor]\ndetect = "always"\n'
                          f'read_timeout = "2s"\nopen_timeout = "1s"\n\n{cameras}')
        daemons.start("extractor", "extractor", "--config", str(config))
        for path in ("/slow_body.jpg", "/endless_headers.jpg", "/huge_length.jpg"):
            wait_ended(feed, path)
        # each said offline with why, and polled again and said so again: not frozen in its first poll
        for camera, reason in [("slow", "no whole answer within 7s"), ("headers", "no whole answer within 7s"),
                               ("huge", "body of 1907 MiB, over 64 MiB")]:
            again = pull.until(status_of(camera, "offline", since_attempts=2))
            assert again.reason == reason and camera in again.last_error
        assert pull.until(lambda m: isinstance(m, wire.FrameHeader) and m.camera == "good").seq == 0
        assert daemons.stop("extractor") == 0
    stats = daemons.stats("extractor")
    for camera, kind in [("slow", "DeadlineExceeded"), ("headers", "DeadlineExceeded"), ("huge", "TooLarge")]:
        assert stats[camera]["source_errors"][kind] >= 2 and stats[camera]["polls"]["error"] >= 2, stats[camera]
        assert set(stats[camera]["source_errors"]) == {kind}
