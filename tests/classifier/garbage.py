"""Hypothesis strategies for messages no daemon may choke on: bytes that are not the wire format,
and well-formed messages that are wrong (a field out of range or of the wrong type, an unknown
kind or version, a kind the socket never carries). Every one of them must be refused by
common.wire (so a daemon counts it under ``malformed``); none is a valid message by accident."""

from __future__ import annotations

import re

import msgspec
from hypothesis import strategies as st

from common import wire

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
}


@st.composite
def spoiled(draw: st.DrawFn, kinds: tuple[str, ...]) -> list[bytes]:
    """A message of one of ``kinds`` with one field made wrong (frames come with a payload part)."""
    kind = draw(st.sampled_from(kinds))
    body = dict(BASES[kind])
    field = draw(st.sampled_from([k for k in BAD if k in body or (k == "done" and kind == "ready")]))
    body[field] = draw(BAD[field])
    parts = [msgspec.msgpack.encode(body)]
    if kind == "frame":
        parts.append(b"\0" * 48)
    return parts


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
