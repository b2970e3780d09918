"""Reading a real H.264 file with PyAV: every frame, or key frames only with nothing else decoded."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from pathlib import Path

import av
import pytest

from conftest import free_port
from camwire.extractor.source import (SOURCE_ERRORS, Stalled, StallWatch, classify, is_file, open_source, read_deadline,
                              read_frames)


def test_full_decode_yields_every_frame_in_order(sample_clip: Path) -> None:
    with open_source(str(sample_clip)) as c:
        frames = list(read_frames(c, keyframes_only=False))
    assert [f.index for f in frames] == list(range(300))
    assert abs(frames[-1].t - 299 / 25) < 1e-6
    assert [f.index for f in frames if f.key] == list(range(0, 300, 50))


def test_keyframes_decodes_key_frames_only(sample_clip: Path) -> None:
    with open_source(str(sample_clip)) as c:
        frames = [(f.index, round(f.t, 3), f.key) for f in read_frames(c, keyframes_only=True)]
    assert frames == [(i, i / 25, True) for i in range(0, 300, 50)]


def test_file_or_live() -> None:
    assert is_file("/data/a.mp4") and is_file("file:///data/a.mp4")
    assert not is_file("rtsp://cam/1") and not is_file("https://host/live.m3u8")


def test_http_and_hls_sources(tmp_path: Path, sample_clip: Path) -> None:
    """The same decoder path reads a clip over HTTP, and as HLS (playlist + segments) over HTTP."""
    # HTTP cameras stream (MPEG-TS, MJPEG): nothing to seek, unlike an MP4 with its index at the end
    remux(sample_clip, tmp_path / "clip.ts", "mpegts", {})
    remux(sample_clip, tmp_path / "live.m3u8", "hls", {"hls_time": "2", "hls_list_size": "0"})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            for url in (f"{base}/clip.ts", f"{base}/live.m3u8"):
                with open_source(url) as c:
                    frames = list(read_frames(c, keyframes_only=False))
                assert len(frames) == 300, url
                assert frames[0].frame.width == 640
        finally:
            server.shutdown()


def remux(src_path: Path, out_path: Path, fmt: str, options: dict[str, str]) -> None:
    with av.open(str(src_path)) as src, av.open(str(out_path), "w", format=fmt, options=options) as out:
        in_stream = src.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in src.demux(in_stream):
            if packet.dts is not None:
                packet.stream = out_stream
                out.mux(packet)


def test_errors_are_classified_in_ffmpeg_s_words(tmp_path: Path) -> None:
    """Permanent or transient, and a reason a person can read: never an errno number."""
    audio = tmp_path / "audio.wav"
    with av.open(str(audio), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame(format="s16", layout="mono", samples=800)
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    cases = {str(tmp_path / "none.mp4"): (True, "No such file or directory"),
             "rstp://cam/stream1": (True, "Protocol not found"),
             str(audio): (True, "no video stream"),
             f"rtsp://127.0.0.1:{free_port()}/x": (False, "Connection refused")}
    for url, (permanent, reason) in cases.items():
        with pytest.raises(SOURCE_ERRORS) as caught:
            open_source(url, open_timeout=2)
        failure = classify(caught.value, opened=False, file=is_file(url))
        assert (failure.permanent, failure.reason) == (permanent, reason), url
    # from a live source that had opened, any error may pass: a camera's stream can glitch
    assert not classify(av.error.InvalidDataError(1094995529, "Invalid data"), opened=True, file=False).permanent
    assert classify(av.error.InvalidDataError(1094995529, "Invalid data"), opened=True, file=True).permanent


def test_invalid_data_from_a_live_source_that_timed_out_or_was_just_online_is_transient() -> None:
    """FFmpeg's RTSP demuxer says "Invalid data" when its server does not answer in time."""
    invalid = av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
    assert classify(invalid, opened=False, file=False).permanent  # answered at once, with no video: permanent
    after_timeout = classify(invalid, opened=False, file=False, timed_out=10.0)
    assert not after_timeout.permanent
    assert after_timeout.reason == "no answer within 10s (Invalid data found when processing input)"
    assert not classify(invalid, opened=False, file=False, recently_online=True).permanent
    assert classify(invalid, opened=False, file=True, timed_out=10.0).permanent  # a file is what it is
    not_found = av.error.HTTPNotFoundError(-1, "Server returned 404 Not Found")
    assert classify(not_found, opened=False, file=False, recently_online=True).permanent  # no retry mends a 404
    assert classify(av.error.ExitError(-1, "Immediate exit requested")).reason == "timed out"


def test_the_stall_watch_allows_a_burst_ahead_of_real_time_and_no_more() -> None:
    base = time.monotonic()
    live = StallWatch(5.0)
    live.video(0.0, base)
    live.video(1.0, base + 1.0)
    live.check(base + 5.9)
    with pytest.raises(Stalled):
        live.check(base + 6.1)  # 5 s after the last packet, which was due when it came
    hls = StallWatch(5.0)
    for i in range(101):  # a 10 s segment in one go
        hls.video(i / 10, base)
    hls.check(base + 14.9)  # the timeline reaches its end at 10 s: due 5 s after that
    with pytest.raises(Stalled):
        hls.check(base + 15.1)
    hls.video(5000.0, base + 1.0)  # a jump in the timeline: reckoned afresh, from its arrival
    hls.check(base + 5.9)
    with pytest.raises(Stalled):
        hls.check(base + 6.1)


def test_a_live_stream_reads_within_half_the_stall_time() -> None:
    assert read_deadline("rtsp://cam/1", 10.0, 5.0) == 2.5  # the RTSP demuxer fails on the second interrupt
    assert read_deadline("rtsp://cam/1", 2.0, 5.0) == 2.0
    assert read_deadline("https://cam/live.m3u8", 10.0, 5.0) == 10.0  # HLS waits for its next segment
    assert read_deadline("/data/a.mp4", 10.0, 5.0) == 10.0
