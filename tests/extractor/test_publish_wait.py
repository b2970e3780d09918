"""``--publish-wait`` waits for a recorder, not for anyone: a web console viewer subscribes to a
camera's frames, status and end exactly as a recorder with a config does, so a recorder also
subscribes to a marker of its own (extractor.subscribers) and the wait is for that marker."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import zmq
from zmq.utils.monitor import recv_monitor_message

from camwire.common import wire
from conftest import Pull, tcp, wait_log
from camwire.common.wire import recorder_topic, recorder_topics
from camwire.extractor.subscribers import Subscribers

VIEWER_KINDS = (wire.FrameHeader, wire.Status, wire.Eos)  # what web.daemon subscribes to for a watched camera


def subscribed(subs: Subscribers, topic: bytes) -> None:
    subs.on_message([zmq.Frame(b"\x01" + topic)])


def test_a_viewer_wants_frames_and_only_a_recorder_s_marker_counts_as_recorded() -> None:
    subs = Subscribers()
    for kind in VIEWER_KINDS:
        subscribed(subs, wire.camera_topic(kind, "door"))
    assert subs.wants("door") and not subs.recorded("door")
    subscribed(subs, b"")  # everything, as a tool tapping the stream might: still no recorder
    assert not subs.recorded("door")
    subscribed(subs, recorder_topic("door"))
    assert subs.recorded("door") and not subs.recorded("doo") and not subs.recorded("door2")
    subscribed(subs, recorder_topic())  # a recorder of everything (no --config)
    assert subs.recorded("yard")
    assert recorder_topics(None) == {recorder_topic()}
    assert recorder_topics(["a", "b"]) == {recorder_topic("a"), recorder_topic("b")}
    # no message can carry the marker: every packed message starts with a msgpack map
    assert all(wire.camera_topic(kind, "door")[:1] != recorder_topic()[:1] for kind in VIEWER_KINDS)


def viewer(ctx: zmq.Context, addr: str, camera: str) -> tuple[zmq.Socket, float]:
    """A SUB that subscribes as the web console does for one watched camera; returns it and the
    wall time its subscription was on its way (the handshake done)."""
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    for kind in VIEWER_KINDS:
        sock.setsockopt(zmq.SUBSCRIBE, wire.camera_topic(kind, camera))
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    sock.connect(addr)
    assert monitor.poll(30_000), f"could not connect to {addr}"
    assert recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
    at = time.time()
    sock.disable_monitor()
    monitor.close()
    return sock, at


def logged_at(record: dict) -> float:
    return datetime.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()


def test_a_console_viewer_does_not_end_the_publish_wait(daemons, zctx, sample_clip: Path) -> None:
    pull, publish = Pull(zctx), tcp()
    proc = daemons.start("extractor", "extractor", "--camera", "door", "--source", str(sample_clip), "--push",
                         pull.addr, "--publish", publish, "--publish-wait", "10s", "--every", "25")
    sock, subscribed_at = viewer(zctx, publish, "door")
    went_on = wait_log(daemons.tmp / "extractor.log", lambda r: r["event"] in ("recorder present",
                                                                            "no recorder yet; going on"), proc=proc)
    assert went_on["event"] == "no recorder yet; going on"
    assert subscribed_at < logged_at(went_on)  # the viewer was there all along, and did not count
    assert sock.poll(30_000)  # it does get the camera's frames: it is a subscriber, only not a recorder
    assert wire.unpack(sock.recv_multipart()[0]).camera == "door"
    sock.close()


def test_a_recorder_ends_the_publish_wait(daemons, zctx, sample_clip: Path, tmp_path: Path) -> None:
    pull, publish = Pull(zctx), tcp()
    proc = daemons.start("extractor", "extractor", "--camera", "door", "--source", str(sample_clip), "--push",
                         pull.addr, "--publish", publish, "--publish-wait", "60s", "--every", "25")
    daemons.start("recorder", "recorder", "--subscribe", publish, "--dir", str(tmp_path / "ring"))
    went_on = wait_log(daemons.tmp / "extractor.log", lambda r: r["event"] in ("recorder present",
                                                                            "no recorder yet; going on"), proc=proc)
    assert went_on["event"] == "recorder present"
    pull.until(lambda m: isinstance(m, wire.Eos))
    assert daemons.wait("extractor") == 0
