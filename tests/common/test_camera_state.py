"""The one definition of a camera's states: each means something, the wire carries the reported
ones, the sink's own transitions and what it shows over what the extractor said."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest

from camwire.common import camera_state as cs
from camwire.common import wire


def test_every_state_has_a_meaning_a_setter_and_a_severity() -> None:
    assert set(cs.MEANING) == set(cs.SET_BY) == set(cs.SEVERITY) == set(cs.STATES)
    assert all(cs.MEANING[s] for s in cs.STATES)
    assert {s for s in cs.STATES if cs.SET_BY[s] == "sink"} == {"degraded", "covered"}
    assert cs.WITH_REASON <= set(cs.STATES)


def test_the_wire_carries_the_reported_states_and_no_other() -> None:
    assert get_args(wire.CameraState) == cs.REPORTED
    assert set(cs.REPORTED) < set(cs.STATES) and set(cs.ONLINE) == set(cs.REPORTED)
    for state in cs.REPORTED:
        assert wire.unpack(wire.pack(wire.Status(camera="c", state=state, ts_ns=1))).state == state
    for state in set(cs.STATES) - set(cs.REPORTED):  # the sink's own: never from an extractor
        with pytest.raises((msgspec.ValidationError, wire.MalformedMessage)):
            wire.unpack(wire.pack(wire.Status(camera="c", state=state, ts_ns=1)))


def test_the_sinks_own_transitions() -> None:
    assert all(set(moves) | set(moves.values()) <= set(cs.STATES) for moves in cs.AFTER.values())
    eos = cs.AFTER["eos"]
    assert "failed" not in eos and all(eos[s] == "ended" for s in eos)  # a failed source keeps saying why
    assert cs.AFTER["back"] == {"connecting": "online", "offline": "online"}  # results prove it streams


def test_shown_puts_silence_first_then_result_errors_then_what_the_extractor_said() -> None:
    assert cs.shown("online", None, True, "boom") == ("offline", cs.SILENT)
    assert cs.shown("online", None, False, "boom") == ("degraded", "boom")
    assert cs.shown("stale", "no new image for 5 polls", False, "boom") == ("stale", "no new image for 5 polls")
    assert cs.shown("connecting", None, False, None) == ("connecting", None)
    assert cs.with_covered("online", True) == "covered"
    assert cs.with_covered("offline", True) == "offline" and cs.with_covered("online", False) == "online"


def test_each_camera_event_tells_a_state() -> None:
    assert set(cs.EVENT_STATE) == {"camera_online", "camera_offline", "camera_failed", "camera_covered",
                                   "camera_uncovered"}
    assert set(cs.EVENT_STATE.values()) <= set(cs.STATES)
    assert cs.EVENT_STATE["camera_uncovered"] == "online"
