"""Hypothesis strategies for messages no daemon may choke on: bytes that are not the wire format,
and well-formed messages that are wrong (a field out of range or of the wrong type, a key said
twice, an unknown kind or version, a kind the socket never carries). Every one of them must be
refused by common.wire (so a daemon counts it under ``malformed``); none is a valid message by
accident. Besides them, valid messages about invented cameras (:func:`invented`): a daemon takes
them, or refuses them for want of a place in its pool (common.admission, :class:`PoolOracle`)."""

from __future__ import annotations

import re

import msgspec
from hypothesis import strategies as st

from camwire.common import wire

KINDS = ("frame", "result", "ready", "heartbeat", "reset", "bye", "status", "eos", "workers", "event")
BIG = 2**64 - 1  # msgpack's largest unsigned integer


def _not_camera(text: str) -> bool:
    return re.fullmatch(wire.CAMERA_NAME_PATTERN, text) is None


ANY_INT = st.integers(min_value=-(2**63), max_value=BIG)  # every int msgpack can carry

BAD = {  # a field, and values it can never take
    "v": st.integers(min_value=-(2**63), max_value=BIG).filter(lambda v: v != 1) | st.text(max_size=4),
    "kind": st.text(max_size=12).filter(lambda k: k not in KINDS) | ANY_INT,
    "camera": st.text(max_size=80).filter(_not_camera) | ANY_INT | st.none(),
    "seq": st.integers(max_value=-1, min_value=-(2**63)) | st.integers(min_value=2**62 + 1, max_value=BIG)
    | st.text(max_size=4),
    "ts_ns": st.integers(max_value=-1, min_value=-(2**63)) | st.floats(allow_nan=True) | st.binary(max_size=4),
    "width": st.integers(max_value=0, min_value=-(2**63)) | st.integers(min_value=16385, max_value=BIG),
    "credits": st.integers(max_value=-1, min_value=-(2**63)) | st.integers(min_value=4097, max_value=BIG)
    | st.floats(),
    "worker": st.just("") | st.text(min_size=129, max_size=140) | ANY_INT,
    "state": st.text(max_size=10).filter(lambda s: s not in ("connecting", "online", "offline", "failed")),
    "done": st.lists(st.tuples(st.text(max_size=70).filter(_not_camera), st.integers(0, 10)), min_size=1,
                     max_size=3),
}

BASES = {  # one valid message of each kind, before a field is spoiled
    "frame": {"v": 1, "kind": "frame", "camera": "cam", "seq": 1, "ts_ns": 1, "width": 4, "height": 4},
    "ready": {"v": 1, "kind": "ready", "worker": "w", "credits": 1},
    "heartbeat": {"v": 1, "kind": "heartbeat", "worker": "w"},
    "status": {"v": 1, "kind": "status", "camera": "cam", "state": "online", "ts_ns": 1},
    "eos": {"v": 1, "kind": "eos", "camera": "cam", "sent": 1},
    "reset": {"v": 1, "kind": "reset"},
    "result": {"v": 1, "kind": "result", "camera": "cam", "seq": 1, "ts_ns": 1, "width": 4, "height": 4},
    "motion": {"v": 1, "kind": "motion", "camera": "cam", "active": True, "ts_ns": 1},
}


CAMERA_NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
AGAIN = {  # a field, and values it may well take: said a second time, the message is refused all the same
    "v": st.just(1), "kind": st.sampled_from(KINDS), "camera": CAMERA_NAMES, "seq": st.integers(0, 100),
    "ts_ns": st.integers(0, 2**62), "width": st.integers(1, 16), "height": st.integers(1, 16),
    "worker": st.just("w"), "credits": st.integers(0, 4), "state": st.sampled_from(["online", "offline"]),
    "sent": st.integers(0, 5),
}


def pairs(items: list[tuple[str, object]]) -> bytes:
    """A msgpack map written entry by entry, so a key may come twice (a dict cannot hold that)."""
    return _map_header(len(items)) + b"".join(
        msgspec.msgpack.encode(k) + msgspec.msgpack.encode(v) for k, v in items)


def _map_header(n: int) -> bytes:
    return bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")


@st.composite
def spoiled(draw: st.DrawFn, kinds: tuple[str, ...]) -> list[bytes]:
    """A message of one of ``kinds`` with one field made wrong, or said twice (the second time
    with a value it may take: two cameras, two seqs); frames come with a payload part."""
    kind = draw(st.sampled_from(kinds))
    body = dict(BASES[kind])
    if draw(st.booleans()):
        field = draw(st.sampled_from([k for k in AGAIN if k in body]))
        items = list(body.items())
        items.insert(draw(st.integers(0, len(items))), (field, draw(AGAIN[field] | st.just(body[field]))))
        head = pairs(items)
    else:
        field = draw(st.sampled_from([k for k in BAD if k in body or (k == "done" and kind == "ready")]))
        body[field] = draw(BAD[field])
        head = msgspec.msgpack.encode(body)
    return [head, b"\0" * 48] if kind == "frame" else [head]


@st.composite
def invented(draw: st.DrawFn, kinds: tuple[str, ...]) -> list[bytes]:
    """A valid message of one of ``kinds`` (frame, status, eos, motion, result) about an invented camera."""
    kind, camera = draw(st.sampled_from(kinds)), draw(CAMERA_NAMES)
    if kind == "frame":
        head = wire.FrameHeader(camera=camera, seq=draw(st.integers(0, 100)), ts_ns=1, width=4, height=4, prev=-1)
        return wire.frame_parts(head, b"\x80" * head.raw_size)
    message = {"status": lambda: wire.Status(camera=camera, state="online", ts_ns=1),
               "eos": lambda: wire.Eos(camera=camera, sent=0),
               "motion": lambda: wire.Motion(camera=camera, active=draw(st.booleans()), ts_ns=1),
               "result": lambda: wire.Result(camera=camera, seq=0, ts_ns=1, width=4, height=4)}[kind]()
    return [wire.pack(message)]


class PoolOracle:
    """What common.admission does with the names one peer sends, while none goes idle: the
    ``configured`` always pass, the first ``size`` other names take the pool's places, and every
    message for a name after them is refused (counted under ``cameras_refused``)."""

    def __init__(self, size: int, configured: tuple[str, ...] = ()) -> None:
        self.size, self.configured = size, set(configured)
        self.placed: set[str] = set()
        self.refused = 0

    def admits(self, camera: str) -> bool:
        if camera in self.configured or camera in self.placed:
            return True
        if len(self.placed) < self.size:
            self.placed.add(camera)
            return True
        self.refused += 1
        return False


@st.composite
def noise(draw: st.DrawFn) -> list[bytes]:
    """One to three parts of bytes that are not a message."""
    parts = draw(st.lists(st.binary(max_size=64), min_size=1, max_size=3))
    return parts


def wrong_kind(kinds: tuple[str, ...]) -> st.SearchStrategy[list[bytes]]:
    """Valid messages of kinds the socket never carries."""
    return st.sampled_from([[msgspec.msgpack.encode(BASES[k])] for k in kinds])


def refused(parts: list[bytes]) -> bool:
    """True when part 0 alone fails to decode (the case every generated message must be in,
    unless it is refused by kind or part count instead)."""
    try:
        wire.unpack(parts[0])
    except wire.MalformedMessage:
        return True
    return False
