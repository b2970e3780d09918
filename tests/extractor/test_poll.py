"""Polled clip feeds (extractor.poll): a real extractor process polling a local HTTP server
(tests/feed_server.py) that changes its JPEGs, clips and HLS segments on command, answers 304,
429 + Retry-After, holds a connection without a word, and serves a "camera offline" placeholder.
What the extractor sends is received on a PULL socket bound here."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from camwire.common import wire
from camwire.common.config import ConfigError, load_config
from conftest import Pull
from camwire.extractor.poll import Poller, clip_id, playlist_entries, retry_after
from feed_server import FeedServer, clip, jpeg

LAST_MODIFIED = "Thu, 02 Jan 2020 03:04:05 GMT"
LAST_MODIFIED_NS = 1577934245 * 10**9


def frame_of(camera: str, **fields) -> Callable[[wire.Message], bool]:
    return lambda m: (isinstance(m, wire.FrameHeader) and m.camera == camera
                      and all(getattr(m, k) == v for k, v in fields.items()))


def status_of(camera: str, state: str, **fields) -> Callable[[wire.Message], bool]:
    return lambda m: (isinstance(m, wire.Status) and m.camera == camera and m.state == state
                      and all(getattr(m, k) == v for k, v in fields.items()))


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.05)  # the server's log has no event to await


@pytest.fixture
def pull(zctx):
    return Pull(zctx)


def test_feeds_of_every_kind_in_one_extractor(daemons, pull, tmp_path: Path) -> None:
    placeholder = jpeg(7)
    with FeedServer() as feed:
        feed.put("/a.jpg", jpeg(40), etag=True, last_modified=LAST_MODIFIED)  # ETag and Last-Modified
        feed.put("/b.jpg", jpeg(80))  # no validators: the body's hash decides
        feed.put("/c.jpg", placeholder, etag=True)
        feed.put("/d.jpg", jpeg(120))
        feed.hang("/d.jpg")
        feed.put("/e.jpg", jpeg(160), last_modified=LAST_MODIFIED)
        feed.throttle("/e.jpg", "1")
        feed.put("/g.jpg", b"<html>the camera's page, not an image</html>", content_type="text/html")
        feed.put("/live/seg0.ts", clip(30, fmt="ts"))
        feed.put("/live/seg1.ts", clip(60, fmt="ts"))
        feed.put("/live.m3u8", b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:0.5,\nlive/seg0.ts\n"
                               b"#EXTINF:0.5,\nlive/seg1.ts\n", content_type="application/vnd.apple.mpegurl")
        cameras = "".join(f'[cameras.{name}]\nurl = "{feed.url(path)}"\npoll = "0.2s"\n{extra}\n' for name, path, extra in [
            ("a", "/a.jpg", ""), ("b", "/b.jpg", "stale_after = 5"),
            ("c", "/c.jpg", f'placeholder = ["{hashlib.sha256(placeholder).hexdigest()}"]'),
            ("d", "/d.jpg", ""), ("e", "/e.jpg", ""), ("f", "/live.m3u8", ""), ("g", "/g.jpg", ""),
            ("h", "/nowhere.jpg", "")])
        config = tmp_path / "camwire.toml"
        config.write_text(f'[sockets]\nfrontend = "{pull.addr}"\n\n[extractor]\ndetect = "always"\n'
                          f'read_timeout = "1s"\nopen_timeout = "1s"\n\n{cameras}')
        daemons.start("extractor", "extractor", "--config", str(config))

        # a: frames carry the clip id (the ETag) and index, and the time of Last-Modified
        first = pull.until(frame_of("a"))
        assert (first.seq, first.clip, first.clip_index, first.ts_ns) == (0, feed.resources["/a.jpg"].etag.strip('"'),
                                                                            0, LAST_MODIFIED_NS)
        wait_for(lambda: len(feed.requests("/a.jpg", 304)) >= 3)  # conditional GETs: nothing decoded
        assert all(r.headers.get("If-None-Match") == feed.resources["/a.jpg"].etag
                   for r in feed.requests("/a.jpg")[1:])
        mark, fetched = len(pull.seen), time.time_ns()
        feed.put("/a.jpg", clip(90, frames=5))  # a clip now, no validators: seq runs on, ts from the fetch
        frames = [pull.until(frame_of("a", clip_index=i), since=mark) for i in range(5)]
        assert [f.seq for f in frames] == [1, 2, 3, 4, 5]
        assert len({f.clip for f in frames}) == 1 and frames[0].clip != first.clip and len(frames[0].clip) == 16
        assert frames[0].ts_ns >= fetched - 10**9 and frames[4].ts_ns - frames[0].ts_ns == pytest.approx(4e8, abs=2e6)

        # b: the same body polled again is unchanged, and after 5 of them the feed is stale
        pull.until(frame_of("b", seq=0))
        stale = pull.until(status_of("b", "stale"))
        assert "5 polls" in stale.reason
        mark = len(pull.seen)
        feed.put("/b.jpg", jpeg(200))
        assert pull.until(frame_of("b"), since=mark).seq == 1
        pull.until(status_of("b", "online"), since=mark)

        # c: the placeholder is offline, and never analysed
        offline = pull.until(status_of("c", "offline"))
        assert offline.reason == "placeholder image (camera offline)"

        # d: a hung connection times out, is counted and said, while the others go on delivering
        timed_out = pull.until(status_of("d", "offline"))
        assert timed_out.reason == "read timed out" and "d.jpg" in timed_out.last_error
        mark = len(pull.seen)
        feed.put("/a.jpg", jpeg(250), etag=True)
        assert pull.until(frame_of("a"), since=mark).seq == 6

        # e: 429 + Retry-After: 1 -> the next request not before a second after it
        wait_for(lambda: len(feed.requests("/e.jpg")) >= 2)
        throttled, after = feed.requests("/e.jpg")[:2]
        assert throttled.status == 429 and after.t - throttled.t >= 1.0
        assert pull.until(frame_of("e")).ts_ns == LAST_MODIFIED_NS
        wait_for(lambda: len(feed.requests("/e.jpg", 304)) >= 1)  # If-Modified-Since, no ETag

        # f: an HLS playlist: its newest segment is the clip; a new segment, a new clip
        seg1 = pull.until(frame_of("f", clip_index=4))
        assert seg1.seq == 4 and not [m for m in pull.frames("f") if m.seq > 4]  # seg0 never read
        feed.put("/live/seg2.ts", clip(120, fmt="ts"))
        feed.put("/live.m3u8", b"#EXTM3U\n#EXTINF:0.5,\nlive/seg1.ts\n#EXTINF:0.5,\nlive/seg2.ts\n",
                 content_type="application/vnd.apple.mpegurl")
        seg2 = pull.until(frame_of("f", clip_index=4, seq=9))
        assert seg2.clip != seg1.clip
        assert len(feed.requests("/live/seg1.ts")) == 1  # the same newest segment is not fetched again

        # g, h: a body that is no image is offline and fetched again; a 404 is failed
        pull.until(status_of("g", "offline", attempts=2))
        assert pull.until(status_of("g", "offline")).reason.startswith("cannot decode the clip: Invalid data")
        assert pull.until(status_of("h", "failed")).reason == "HTTP 404 Not Found"
        assert daemons.stop("extractor") == 0

    assert not pull.frames("c") and not pull.frames("d")
    stats = daemons.stats("extractor")
    a = stats["a"]
    assert a["polls"]["new"] == 3 and a["polls"]["unchanged"] >= 3 and a["poll_responses"]["304"] >= 3
    assert a["decoded"] == 7  # 1 + 5 + 1: nothing unchanged was decoded
    assert stats["b"]["polls"]["unchanged"] >= 5 and stats["b"]["decoded"] == 2
    assert stats["c"]["polls"]["placeholder"] == 1 and "decoded" not in stats["c"]
    assert stats["d"]["source_errors"]["ReadTimeout"] >= 1 and stats["d"]["polls"]["error"] >= 1
    assert stats["e"]["polls"]["throttled"] == 1 and stats["e"]["poll_responses"]["429"] == 1
    assert stats["f"]["decoded"] == 10


def test_poll_needs_one_http_source(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "camwire", "extractor", "--camera", "door", "--source",
                           str(tmp_path / "x.mp4"), "--poll", "30s", "--push", "tcp://127.0.0.1:1"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("--poll: a duration above zero, and one --source with an http(s) URL")


@pytest.mark.parametrize("keys, line, says", [
    ('poll = "soon"', 3, "cameras.a.poll: a duration like 30s"),
    ('poll = 0', 3, "cameras.a.poll: a duration above zero"),
    ('poll = "30s"\nplaceholder = "abc"', 4, "cameras.a.placeholder: a sha256 in hex"),
    ('poll = "30s"\nstale_after = 0', 4, "cameras.a.stale_after: a number of polls, 1 or more"),
    ('stale_after = 3', 3, "cameras.a.stale_after: only for a polled camera"),
])
def test_poll_keys_are_refused_at_their_line(tmp_path: Path, keys: str, line: int, says: str) -> None:
    path = tmp_path / "camwire.toml"
    path.write_text(f'[cameras.a]\nurl = "http://127.0.0.1/a.jpg"\n{keys}\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.line == line and says in err.value.reason


def test_a_polled_camera_needs_an_http_url(tmp_path: Path) -> None:
    path = tmp_path / "camwire.toml"
    path.write_text('[cameras.a]\nurl = "rtsp://10.0.0.5/s"\npoll = "30s"\n')
    with pytest.raises(ConfigError, match="a polled camera needs an http"):
        load_config(path)


def test_retry_after_reads_seconds_and_dates_and_is_capped() -> None:
    assert retry_after("3") == 3.0
    assert retry_after("Thu, 02 Jan 2020 03:04:15 GMT", now=LAST_MODIFIED_NS / 1e9) == 10.0
    assert retry_after("999999") == 600.0
    assert retry_after("soon") is None and retry_after(None) is None


def test_clip_ids_and_playlists() -> None:
    assert clip_id('W/"abc"', "f" * 64) == "abc" and clip_id(None, "0123456789abcdef" * 4) == "0123456789abcdef"
    assert playlist_entries("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n") == (["low.m3u8"], True)


def test_a_refused_connection_is_a_poll_error() -> None:
    with FeedServer() as feed:
        url = feed.url("/x.jpg")
    poller = Poller(url, 1.0, 1.0)
    with pytest.raises(Exception) as err:
        poller.poll()
    assert err.value.failure.reason == "connection refused" and not err.value.failure.permanent
