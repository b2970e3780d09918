"""A camera thread that dies of a bug is started again by the daemon skeleton, counted, and goes
on after the last frame sent (a file is not read again from its start: no frame twice). In-process: the real extractor (skeleton, camera threads, sockets, a real clip),
with PyAV's frame reader wrapped so that it raises what no source error is, once."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import structlog
import zmq

import camwire.extractor.camera  # noqa: F401 (loads the module the test patches)
from camwire import extractor
from camwire.cli import parse
from camwire.common import wire
from conftest import tcp
from camwire.extractor.daemon import main


def test_a_crashed_camera_thread_is_restarted_and_counted(monkeypatch, zctx, sample_clip: Path,
                                                          tmp_path: Path) -> None:
    real = extractor.camera.read_frames
    opened: list[int] = []

    def read_frames_with_a_bug(container, keyframes_only, on_packet=None, stall=None):
        opened.append(1)
        for sf in real(container, keyframes_only, on_packet, stall):
            if len(opened) == 1 and sf.index == 40:
                raise KeyError("a bug, not a source error")
            yield sf

    monkeypatch.setattr(extractor.camera, "read_frames", read_frames_with_a_bug)
    addr = tcp()
    pull = zctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(addr)
    stats = tmp_path / "stats.json"
    args = parse(["extractor", "--camera", "c", "--source", str(sample_clip), "--push", addr, "--every", "10",
                  "--stats", str(stats)])
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        code = main(args)  # returns when the file has been read (the thread restarted once)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        structlog.reset_defaults()
    assert code == 0 and len(opened) == 2

    seqs, eos = [], None
    while pull.poll(5000):
        parts = pull.recv_multipart()
        msg = wire.peek_frame(parts) if len(parts) == 2 else wire.unpack(parts[0])
        if isinstance(msg, wire.FrameHeader):
            seqs.append(msg.seq)
        elif isinstance(msg, wire.Eos):
            eos = msg
            break
    # the first thread sent 0..30 and died at 40; the second skipped what was sent and went on from 40
    # (each thread has its own socket, so the two may interleave on the way: compare as sets)
    assert sorted(seqs) == list(range(0, 300, 10)) and len(set(seqs)) == len(seqs)
    assert eos is not None and eos.last_seq == 299
    counted = json.loads(stats.read_text())["c"]
    assert counted["thread_restarts"] == 1 and counted["decoded"] == 300
    assert counted["skipped"] == {"resumed": 40}
