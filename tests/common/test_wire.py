"""The wire format: typed messages (decoding is validation), frames, and garbage that is only ever counted."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camwire.common import pixels, wire

TS = 1_700_000_000_000_000_000


def header(**kw) -> wire.FrameHeader:
    return wire.FrameHeader(**{**dict(camera="cam", seq=7, ts_ns=TS, pts=0.28, width=64, height=48), **kw})


def image(h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)


# one valid example of every kind: each must survive a round trip unchanged
EXAMPLES = [
    header(enc="lz4", key=True),
    wire.Result(camera="cam", seq=3, ts_ns=TS, width=64, height=48, worker="w-1", detector="motion",
                detections=[wire.Detection("person", 0.9, (1.0, 2.0, 30.5, 40.0))],
                flags=wire.Flags(covered=True, covered_after=5, scene="covered", edge_fraction=0.001),
                error=None, infer_ms=3.5),
    wire.Ready(worker="w-1", credits=4, done=[("cam", 3)], leaving=False),
    wire.Heartbeat(worker="w-1"), wire.Reset(), wire.Bye(),
    wire.Status(camera="cam", state="failed", ts_ns=TS, reason="No such file or directory", attempts=2),
    wire.Eos(camera="cam", sent=10, last_seq=9, fps_in=25.0, results=10),
    wire.Workers(ts_ns=TS, workers=[wire.WorkerLoad("w-1", credits=1, in_flight=2, lost=1)], backlog={"cam": 3}),
    wire.Event(id="20231114T221320.000000000Z-cam-detection", type="detection", camera="cam", ts=TS / 1e9, seq=3,
               detections=[wire.Detection("car", 0.5, (0.0, 0.0, 1.0, 1.0))]),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_kind_round_trips(message) -> None:
    assert wire.unpack(wire.pack(message)) == message


@pytest.mark.parametrize("enc", ["raw", "lz4"])
def test_lossless_frame_round_trip(enc: str) -> None:
    img = image()
    got_header, got = pixels.decode_frame([bytes(p) for p in pixels.encode_frame(header(enc=enc), img)])
    assert got_header == header(enc=enc) and np.array_equal(got, img)


def test_jpeg_round_trip_is_close() -> None:
    img = np.full((48, 64, 3), 120, np.uint8)
    _, got = pixels.decode_frame(pixels.encode_frame(header(enc="jpeg"), img))
    assert got.shape == img.shape and np.abs(got.astype(int) - 120).max() <= 3


def test_raw_payload_is_not_copied() -> None:
    img = image()
    parts = pixels.encode_frame(header(), img)
    assert isinstance(parts[1], memoryview) and np.shares_memory(np.frombuffer(parts[1], np.uint8), img)


def test_passthrough_packet_is_not_pixels() -> None:
    h = header(enc="h264", key=True, dts=0.2, extradata=b"\x00\x00\x00\x01\x67\x64")
    parts = pixels.encode_packet(h, b"\x00\x00\x00\x01\x65packet")
    assert wire.peek_frame(parts) == h
    with pytest.raises(wire.MalformedMessage) as exc:
        pixels.decode_frame(parts)
    assert exc.value.reason == "not_pixels"


def test_a_header_claiming_two_gigabytes_is_refused_before_any_allocation() -> None:
    forged = header(width=16384, height=16384, channels=4, dtype="uint16", enc="lz4")
    with pytest.raises(wire.MalformedMessage) as exc:
        pixels.decode_frame([wire.pack(forged), b"\x00" * 16])
    assert exc.value.reason == "too_large"
    # and a smaller limit holds for a daemon that sets one
    with pytest.raises(wire.MalformedMessage, match="too_large"):
        wire.peek_frame(pixels.encode_frame(header(), image()), max_bytes=1000)


def test_a_jpeg_is_checked_for_its_declared_size_before_it_is_decoded() -> None:
    img = image()
    jpeg = pixels.encode_jpeg(img)
    assert pixels.jpeg_size(jpeg) == (64, 48) and pixels.jpeg_size(b"\x89PNG....") is None
    bomb = jpeg.replace(b"\x00\x30\x00\x40", b"\x4e\x20\x4e\x20", 1)  # SOF0 now says 20000x20000
    assert pixels.jpeg_size(bomb) == (20000, 20000)
    assert pixels.decode_jpeg(bomb) is None  # over the frame limit: not decoded at all
    head = wire.pack(header(enc="jpeg"))
    with pytest.raises(wire.MalformedMessage, match="bad_payload"):
        pixels.decode_frame([head, bomb])  # the wire header says 64x48, the JPEG more
    assert pixels.decode_frame([head, jpeg])[1].shape == (48, 64, 3)


def frame_map(**kw) -> dict:
    return {"v": 1, "kind": "frame", "camera": "cam", "seq": 1, "ts_ns": TS, "width": 4, "height": 2, **kw}


@pytest.mark.parametrize("body, reason", [
    (frame_map(camera="a/b"), "bad_field"), (frame_map(camera="cam#1"), "bad_field"),
    (frame_map(camera="x" * 10_000), "bad_field"), (frame_map(camera=""), "bad_field"),
    (frame_map(seq=-1), "bad_field"), (frame_map(ts_ns=2**63), "bad_field"),
    (frame_map(pts=float("nan")), "bad_field"), (frame_map(pts=float("inf")), "bad_field"),
    (frame_map(width=0), "bad_field"), (frame_map(width=True), "bad_field"),
    (frame_map(enc="png"), "bad_field"), (frame_map(dtype="float64"), "bad_field"),
    (frame_map(extradata=b"x" * (wire.MAX_HEADER_BIN + 1)), "bad_field"),
    ({"v": 1, "kind": "ready", "worker": "w", "credits": 2**62}, "bad_field"),
    ({"v": 1, "kind": "event", "id": "x", "type": "t", "camera": "c", "ts": float("inf")}, "bad_field"),
    ({"v": 1, "kind": "result", "camera": "c", "seq": 1, "ts_ns": 1, "width": 2, "height": 2,
      "detections": [{"label": "x", "confidence": 0.5, "box": [0, 0, float("nan"), 1]}]}, "bad_field"),
    ({"v": 1, "kind": "result", "camera": "c", "seq": "1", "ts_ns": 1, "width": 2, "height": 2}, "bad_field"),
    ({"v": 2, "kind": "bye"}, "bad_version"),
    ({"v": 1, "kind": "nonsense"}, "bad_kind"),
    ({"v": 1}, "bad_kind"),
    ([1, 2], "bad_header"),
])
def test_impossible_values_are_refused(body, reason) -> None:
    with pytest.raises(wire.MalformedMessage) as exc:
        wire.unpack(msgpack.packb(body))
    assert exc.value.reason == reason, str(exc.value)


def test_frame_part_count_size_and_payload() -> None:
    head, payload = pixels.encode_frame(header(), image())
    with pytest.raises(wire.MalformedMessage, match="bad_part_count"):
        pixels.decode_frame([head])
    with pytest.raises(wire.MalformedMessage, match="bad_size"):
        pixels.decode_frame([head, bytes(payload)[:-1]])
    lz4_head = pixels.encode_frame(header(enc="lz4"), image())[0]
    with pytest.raises(wire.MalformedMessage, match="bad_payload|bad_size"):
        pixels.decode_frame([lz4_head, b"\x00garbage"])
    with pytest.raises(wire.MalformedMessage, match="unexpected_kind"):
        wire.peek_frame([wire.pack(wire.Bye()), b""])


KINDS = ["frame", "result", "ready", "heartbeat", "reset", "bye", "status", "eos", "workers", "event", "x"]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=8),
                   st.binary(max_size=8), st.lists(st.integers(-3, 3), max_size=4),
                   st.lists(st.dictionaries(st.sampled_from(["label", "confidence", "box", "name"]),
                                            st.one_of(st.text(max_size=3), st.floats(), st.lists(st.floats(), max_size=4))),
                            max_size=2))
FIELDS = ["camera", "seq", "ts_ns", "width", "height", "pts", "channels", "dtype", "enc", "worker", "credits",
          "done", "state", "detections", "flags", "workers", "backlog", "id", "type", "ts", "results"]
maps = st.builds(lambda kind, v, fields: {"v": v, "kind": kind, **fields}, st.sampled_from(KINDS),
                 st.sampled_from([1, 1, 1, 2]), st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8))
garbage = st.lists(st.one_of(st.binary(max_size=64), maps.map(lambda m: msgpack.packb(m, use_bin_type=True))),
                   min_size=0, max_size=3)


@settings(max_examples=600, deadline=None)
@given(garbage)
def test_garbage_of_every_kind_only_ever_raises_malformed(parts) -> None:
    for part in parts[:1]:
        try:
            message = wire.unpack(part)
        except wire.MalformedMessage:
            continue
        assert isinstance(message, wire.Message)
    try:
        pixels.decode_frame(parts)
    except wire.MalformedMessage:
        pass


def test_the_relay_side_does_not_load_opencv() -> None:
    import subprocess
    import sys

    code = "import sys, camwire.common.wire; print('cv2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_a_ventilator_judging_the_whole_shipped_file_does_not_load_opencv() -> None:
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, **{k: "x" for k in ("FRONT_DOOR_PASSWORD", "CAR_PARK_PASSWORD", "MQTT_PASSWORD")}}
    code = ("import sys; from camwire.cli import parse; "
            "args = parse(['ventilator', '--config', 'deploy/camwire.toml']); "
            "args.config_loader(args.config.path); print('cv2' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "False"


# -- repeated keys: msgpack allows them, msgspec keeps the last, camwire refuses the message ------

def pairs(*items: tuple[str, object]) -> bytes:
    """A msgpack map written entry by entry, so a key may come twice (a dict cannot)."""
    return msgpack.Packer().pack_map_header(len(items)) + b"".join(
        msgpack.packb(k) + msgpack.packb(v, use_bin_type=True) for k, v in items)


def test_a_second_camera_behind_another_cameras_topic_is_refused() -> None:
    """The forgery the issue found: a frame that starts with cam1's topic (so a SUB subscribed to
    cam1 takes it) and names cam2 further on, which msgspec alone would have read as cam2."""
    fields = [(k, v) for k, v in msgpack.unpackb(wire.pack(header(camera="cam1"))).items() if k != "v"]
    forged = pairs(*fields, ("camera", "cam2"))  # "v" left out, so the map's length matches the topic's
    assert forged.startswith(wire.camera_topic(wire.FrameHeader, "cam1"))
    with pytest.raises(wire.MalformedMessage) as exc:
        wire.unpack(forged)
    assert exc.value.reason == "topic_mismatch"
    with pytest.raises(wire.MalformedMessage, match="topic_mismatch"):
        wire.peek_frame([forged, b"\0" * 64 * 48 * 3])


@pytest.mark.parametrize("body", [
    pairs(("v", 1), ("kind", "frame"), ("seq", 1), ("camera", "a"), ("ts_ns", 1), ("width", 4), ("height", 2),
          ("camera", "b")),
    pairs(("v", 1), ("kind", "status"), ("camera", "a"), ("state", "online"), ("ts_ns", 1), ("state", "offline")),
    pairs(("kind", "ready"), ("worker", "w"), ("credits", 1), ("credits", 4000)),
    pairs(("v", 1), ("kind", "bye"), ("v", 1)),
    # nested maps: a detection, a result's flags, a status's drops, the pool's backlog
    pairs(("v", 1), ("kind", "result"), ("camera", "c"), ("seq", 1), ("ts_ns", 1), ("width", 2), ("height", 2),
          ("detections", [{"label": "x", "confidence": 0.5, "box": [0, 0, 1, 1]}]),
          ("flags", {"covered": True})).replace(b"\x81\xa7covered\xc3", b"\x82\xa7covered\xc3\xa7covered\xc2"),
    pairs(("v", 1), ("kind", "result"), ("camera", "c"), ("seq", 1), ("ts_ns", 1), ("width", 2), ("height", 2),
          ("detections", [{"label": "x", "confidence": 0.5, "box": [0, 0, 1, 1]}]))
    .replace(b"\x83\xa5label\xa1x", b"\x84\xa5label\xa1x\xa5label\xa1y"),
    pairs(("v", 1), ("kind", "status"), ("camera", "a"), ("state", "online"), ("ts_ns", 1),
          ("drops", {"dropped/hwm": 1})).replace(b"\x81\xabdropped/hwm\x01",
                                                 b"\x82\xabdropped/hwm\x01\xabdropped/hwm\x02"),
    pairs(("v", 1), ("kind", "workers"), ("ts_ns", 1), ("backlog", {"a": 1})).replace(b"\x81\xa1a\x01",
                                                                                     b"\x82\xa1a\x01\xa1a\x02"),
], ids=["frame", "status", "ready", "bye", "flags", "detection", "drops", "backlog"])
def test_a_map_that_repeats_a_key_is_refused(body: bytes) -> None:
    with pytest.raises(wire.MalformedMessage) as exc:
        wire.unpack(body)
    assert exc.value.reason == "duplicate_key", str(exc.value)


def test_messages_packed_by_another_encoder_in_another_order_are_still_taken() -> None:
    """Only pack()'s own bytes take the fast path; the rest are looked at key by key and pass."""
    status = msgpack.packb({"ts_ns": 1, "state": "online", "camera": "c", "kind": "status", "v": 1,
                            "drops": {"skipped/no_motion": 3}})
    assert wire.unpack(status) == wire.Status(camera="c", state="online", ts_ns=1, drops={"skipped/no_motion": 3})
    result = msgpack.packb({"v": 1, "kind": "result", "camera": "c", "seq": 1, "ts_ns": 1, "width": 2, "height": 2,
                            "detections": [{"label": "x", "confidence": 0.5, "box": [0, 0, 1, 1]}]})
    assert wire.unpack(memoryview(result)).detections[0].box == (0.0, 0.0, 1.0, 1.0)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([m for m in EXAMPLES]), st.data())
def test_any_key_said_twice_in_any_kind_is_refused(message, data) -> None:
    items = list(msgpack.unpackb(wire.pack(message), strict_map_key=False).items())
    again = data.draw(st.sampled_from(items))
    at = data.draw(st.integers(0, len(items)))
    with pytest.raises(wire.MalformedMessage) as exc:
        wire.unpack(pairs(*items[:at], again, *items[at:]))
    assert exc.value.reason in ("duplicate_key", "topic_mismatch")
