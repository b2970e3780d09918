"""The ventilator as a process over TCP: what it refuses, what it counts, and that a real clip
still passes whole afterwards."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import msgspec
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camwire.common import wire
from conftest import ROOT
from garbage import PoolOracle, invented, noise, spoiled, wrong_kind

EVERY = ("--every", "5")  # 60 of the clip's 300 frames: quick, and still the whole clip
HUGE = wire.FrameHeader(camera="big", seq=0, ts_ns=1, width=16384, height=16384, channels=4, dtype="uint16",
                        enc="lz4", live=False)  # 2 GiB of pixels claimed by a few bytes


def push(zctx: zmq.Context, addr: str, messages: list[list[bytes]]) -> None:
    sock = zctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.connect(addr)
    for parts in messages:
        sock.send_multipart(parts)
    sock.close()  # lingers until all is delivered


def clip_passes_whole(p, daemons, camera: str = "gen") -> int:
    """Wait for the sink to drain ``camera`` (it exits then); returns the frames sent."""
    assert daemons.wait("sink", timeout=120) == 0
    assert daemons.wait(f"extractor-{camera}") == 0
    sent = daemons.stats(f"extractor-{camera}")[camera]["sent"]
    assert daemons.stats("sink")["results"][camera] == sent
    return sent


def test_the_ventilator_never_loads_opencv() -> None:
    code = "import sys, camwire.classifier.ventilator; assert 'cv2' not in sys.modules, 'cv2 imported'"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_2gib_frame_is_dropped_and_counted_and_the_clip_after_it_passes_whole(
        pipeline_factory, daemons, zctx, sample_clip: Path) -> None:
    p = pipeline_factory(until="gen")
    p.worker("worker-1", "covered")
    push(zctx, p.frontend, [wire.frame_parts(HUGE, b"\0" * 64)])
    p.extractor("gen", str(sample_clip), extra=EVERY)
    sent = clip_passes_whole(p, daemons)
    assert daemons.stop("ventilator") == 0 and daemons.stop("worker-1") == 0
    vent = daemons.stats("ventilator")
    assert vent["malformed"] == {"too_large": 1}
    assert vent["received"] == {"gen": sent} and vent["completed"] == {"gen": sent}
    assert "big" not in vent.get("dropped", {})


def test_a_worker_that_takes_frames_and_never_answers_costs_only_counted_losses(
        pipeline_factory, daemons, zctx, sample_clip: Path) -> None:
    p = pipeline_factory(until="gen", vent_args=("--frame-deadline", "1s"))
    p.worker("worker-1", "covered")
    fake = zctx.socket(zmq.DEALER)
    fake.setsockopt(zmq.LINGER, 0)
    fake.setsockopt(zmq.IDENTITY, b"fake")
    fake.connect(p.backend)
    # credits no worker can have: refused by the type, so counted as malformed
    fake.send(msgspec.msgpack.encode({"v": 1, "kind": "ready", "worker": "fake", "credits": 2**62}))
    p.extractor("gen", str(sample_clip), extra=EVERY)
    taken: set[tuple[str, int]] = set()
    next_ask = 0.0
    while daemons.procs["sink"].poll() is None:  # the sink exits once every answered frame is in
        if time.monotonic() >= next_ask:  # alive (heartbeats) and greedy (more credits), never answering
            next_ask = time.monotonic() + 0.5
            fake.send(wire.pack(wire.Heartbeat(worker="fake")))
            fake.send(wire.pack(wire.Ready(worker="fake", credits=1)))
        if fake.poll(100):
            parts = fake.recv_multipart()
            if len(parts) == 2:
                header = wire.peek_frame(parts)
                taken.add((header.camera, header.seq))
    assert daemons.wait("sink") == 0 and daemons.wait("extractor-gen") == 0
    for name in ("worker-1", "ventilator"):
        assert daemons.stop(name) == 0
    sent = daemons.stats("extractor-gen")["gen"]["sent"]
    vent, sink, worker = daemons.stats("ventilator"), daemons.stats("sink"), daemons.stats("worker-1")

    assert taken, "the fake worker was given no frame"
    assert vent["malformed"] == {"bad_field": 1}
    assert vent["dropped"] == {"gen": {"deadline": len(taken)}}  # each frame it took: lost, counted
    assert vent["workers"]["fake"]["lost"] == len(taken)
    # every other frame was processed by the real worker, and its result reached the sink
    assert worker["processed"]["gen"] == vent["completed"]["gen"] == sent - len(taken)
    assert sink["results"]["gen"] == sent - len(taken)


def taken_by_frontend(parts: list[bytes]) -> wire.Message | None:
    """The message if the frontend takes it for what it is (a frame, status, eos or motion), else None."""
    try:
        if len(parts) == 2:
            return wire.peek_frame(parts)
        message = wire.unpack(parts[0])
    except wire.MalformedMessage:
        return None
    return message if len(parts) == 1 and isinstance(message, (wire.Status, wire.Eos, wire.Motion)) else None


def test_garbage_into_the_frontend_and_backend_is_counted_and_dropped(
        pipeline_factory, daemons, zctx, tmp_path: Path, sample_clip: Path) -> None:
    """Garbage, keys said twice and invented cameras, then a real clip: the garbage is counted as
    malformed, each invented name takes a place in the pool (8 here) or is counted refused, and the
    clip's camera, named in the config, passes whole."""
    cfg = tmp_path / "camwire.toml"
    cfg.write_text(f'[cameras.gen]\nurl = "{sample_clip}"\n')
    p = pipeline_factory(until="gen", vent_args=("--config", str(cfg), "--max-cameras", "8"))
    front = zctx.socket(zmq.PUSH)
    front.setsockopt(zmq.LINGER, 5000)
    front.connect(p.frontend)
    back = zctx.socket(zmq.DEALER)
    back.setsockopt(zmq.LINGER, 5000)
    back.connect(p.backend)
    sent = {"front": 0, "back": 0, "invented_frames": 0}
    pool = PoolOracle(8, configured=("gen",))

    front_messages = st.one_of(noise(), spoiled(("frame", "status", "eos")),
                               wrong_kind(("ready", "heartbeat", "reset", "frame")),
                               invented(("frame", "status", "eos", "motion")))
    back_messages = st.one_of(noise(), spoiled(("ready", "heartbeat")), wrong_kind(("status", "eos", "reset", "frame")))

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(front_messages, max_size=6), st.lists(back_messages, max_size=6))
    def send(to_front: list[list[bytes]], to_back: list[list[bytes]]) -> None:
        for parts in to_front:
            front.send_multipart(parts)
            if (message := taken_by_frontend(parts)) is None:
                sent["front"] += 1
            elif pool.admits(message.camera) and isinstance(message, wire.FrameHeader):
                sent["invented_frames"] += 1
        for parts in to_back:
            back.send_multipart(parts)
        sent["back"] += len(to_back)

    send()
    for i in range(16):  # names past the pool's 8 whatever hypothesis drew
        header = wire.FrameHeader(camera=f"invented{i}", seq=0, ts_ns=1, width=4, height=4)
        front.send_multipart(wire.frame_parts(header, b"\0" * header.raw_size))
        sent["invented_frames"] += pool.admits(header.camera)
    # the pool is full and has refused some (its places may all have gone to names hypothesis drew
    # for a status or an eos, so that no invented frame got in: the counts below say so either way)
    assert sent["front"] and sent["back"] and len(pool.placed) == 8 and pool.refused
    front.close()
    back.close()
    p.worker("worker-1", "covered")
    p.extractor("gen", str(sample_clip), extra=EVERY)
    frames = clip_passes_whole(p, daemons)
    assert daemons.stop("ventilator") == 0 and daemons.stop("worker-1") == 0
    vent = daemons.stats("ventilator")
    assert sum(vent["malformed"].values()) == sent["front"] + sent["back"]
    assert "errors" not in vent  # every one refused for its form, none by a handler that broke
    assert vent["received"]["gen"] == vent["completed"]["gen"] == frames  # nothing of the garbage got in
    assert sum(vent["received"].values()) - frames == sent["invented_frames"]  # those the pool took
    assert sum(vent["cameras_refused"]["pool_full"].values()) == pool.refused  # and the rest, counted
