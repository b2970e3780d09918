"""The wire format: round trips for every encoding, and garbage that must only ever be counted."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classifier.events import Events
from classifier.sink import Sink
from common import wire


def header(**kw) -> wire.FrameHeader:
    base = dict(camera="cam", seq=7, ts_ns=1_700_000_000_000_000_000, pts=0.28, width=64, height=48)
    return wire.FrameHeader(**{**base, **kw})


def image(h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("enc", ["raw", "lz4"])
def test_lossless_round_trip(enc: str) -> None:
    img = image()
    parts = wire.encode_frame(header(enc=enc), img)
    got_header, got = wire.decode_frame([bytes(p) for p in parts])
    assert got_header == header(enc=enc)
    assert np.array_equal(got, img)


def test_jpeg_round_trip_is_close() -> None:
    img = np.full((48, 64, 3), 120, np.uint8)
    _, got = wire.decode_frame(wire.encode_frame(header(enc="jpeg"), img))
    assert got.shape == img.shape and np.abs(got.astype(int) - 120).max() <= 3


def test_passthrough_packet_round_trip() -> None:
    h = header(enc="h264", key=True, dts=0.2, extradata=b"\x00\x00\x00\x01\x67\x64")
    parts = wire.encode_packet(h, b"\x00\x00\x00\x01\x65packet")
    assert wire.peek_frame(parts) == h and bytes(parts[1]) == b"\x00\x00\x00\x01\x65packet"
    # a packet is not pixels: a worker that gets one counts it instead of crashing
    with pytest.raises(wire.MalformedMessage) as exc:
        wire.decode_frame(parts)
    assert exc.value.reason == "not_pixels"
    with pytest.raises(ValueError):
        wire.encode_packet(header(enc="lz4"), b"x")


def test_oversized_binary_in_a_header_is_refused() -> None:
    head = msgpack.packb({"v": wire.PROTOCOL_VERSION, "kind": "frame", "extradata": b"x" * (wire.MAX_HEADER_BIN + 1)})
    with pytest.raises(wire.MalformedMessage):
        wire.unpack(head)


def test_raw_payload_is_not_copied() -> None:
    img = image()
    parts = wire.encode_frame(header(), img)
    assert isinstance(parts[1], memoryview) and np.shares_memory(np.frombuffer(parts[1], np.uint8), img)


@pytest.mark.parametrize("parts, reason", [
    ([b"\xc1"], "bad_msgpack"),
    ([msgpack.packb([1, 2])], "bad_header"),
    ([msgpack.packb({"v": 99, "kind": "frame"}), b""], "bad_version"),
    ([msgpack.packb({"v": 1, "kind": "nonsense"}), b""], "bad_kind"),
])
def test_malformed_headers(parts, reason) -> None:
    with pytest.raises(wire.MalformedMessage) as exc:
        wire.decode_frame(parts + [b""] * (2 - len(parts)))
    assert exc.value.reason == reason


def test_wrong_part_count_size_and_encoding() -> None:
    head, payload = wire.encode_frame(header(), image())
    with pytest.raises(wire.MalformedMessage, match="bad_part_count"):
        wire.decode_frame([head])
    with pytest.raises(wire.MalformedMessage, match="bad_size"):
        wire.decode_frame([head, bytes(payload)[:-1]])
    forged = msgpack.packb({**msgpack.unpackb(head), "enc": "png"})
    with pytest.raises(wire.MalformedMessage, match="bad_encoding"):
        wire.decode_frame([forged, payload])
    lz4_head = wire.encode_frame(header(enc="lz4"), image())[0]
    with pytest.raises(wire.MalformedMessage, match="bad_payload|bad_size"):
        wire.decode_frame([lz4_head, b"\x00garbage"])


headers = st.fixed_dictionaries({
    "v": st.sampled_from([1, 1, 2]), "kind": st.sampled_from(["frame", "result", "x"]),
    "camera": st.one_of(st.text(max_size=5), st.integers(-2**63, 2**64 - 1)), "seq": st.integers(-2, 10),
    "ts_ns": st.integers(0, 2**64 - 1), "width": st.integers(-1, 70), "height": st.integers(-1, 50),
    "channels": st.integers(0, 4), "dtype": st.sampled_from(["uint8", "float64", "x"]),
    "enc": st.sampled_from(list(wire.ENCODINGS) + ["png"]),
})
garbage_parts = st.lists(st.one_of(st.binary(max_size=64), headers.map(msgpack.packb)), min_size=0, max_size=3)


@settings(max_examples=400, deadline=None)
@given(garbage_parts)
def test_garbage_only_raises_malformed(parts) -> None:
    try:
        wire.decode_frame(parts)
    except wire.MalformedMessage:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=3))
def test_sink_counts_garbage_and_goes_on(parts) -> None:
    sink = Sink(pull=None, pub=None, events_file=None, data_dir=None, events=Events(), log=_NullLog())
    sink.handle(parts)  # must not raise
    assert sum(sink.events.counters.snapshot().get("malformed", {}).values()) <= 1


class _NullLog:
    def __getattr__(self, _name):
        return lambda *a, **k: None
