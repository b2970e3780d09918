"""A camera's state: the one definition that the extractor, the sink, ``camwire status``, the web
console and MQTT share. Nothing here is sent by itself; ``wire.Status.state`` is a :data:`Reported`.

The states (:data:`State`; :data:`MEANING` says each in words, :data:`SET_BY` who sets it):

- reported by the camera's extractor in ``wire.Status`` (extractor.camera, extractor.feed):
  ``connecting`` (opening its source, not yet known either way), ``online`` (frames come),
  ``offline`` (the source stopped or cannot be reached; ``reason`` why; retried), ``failed`` (the
  source cannot work as configured: no such file, 401/403/404, not a video; retried on a long
  backoff), ``stale`` (a polled feed whose image stopped changing; ``reason`` for how many polls);
- said by the extractor with its ``wire.Eos``, kept by the sink: ``ended`` (a file read to its end);
- derived by the sink, which holds each camera's live state (sink.cameras): ``offline`` with
  reason :data:`SILENT` (its extractor sent nothing for the sink's ``--silent-after``),
  ``degraded`` (online, but every recent result carried an error) and ``covered`` (online, the
  lens covered: status.db keeps ``online`` and its ``covered`` column; ``camwire status`` and
  MQTT's retained ``state`` say ``covered``).

The extractor may report any :data:`Reported` state after any other (a source fails, comes back,
stalls, in any order); :data:`AFTER` holds the sink's own transitions, :func:`shown` puts the
sink's findings over what the extractor said, and :data:`EVENT_STATE` ties the ``camera_*``
events (sink.events) to the state MQTT publishes for each (sink.outputs.mqtt).
"""

from __future__ import annotations

from typing import Literal, get_args

Reported = Literal["connecting", "online", "offline", "failed", "stale"]  # wire.Status.state
State = Literal["connecting", "online", "offline", "failed", "stale", "ended", "degraded", "covered"]
REPORTED: tuple[Reported, ...] = get_args(Reported)
STATES: tuple[State, ...] = get_args(State)

SILENT = "extractor silent"  # the reason of an offline the sink found itself: a dead extractor cannot say it

MEANING: dict[State, str] = {
    "connecting": "opening its source; not known yet either way",
    "online": "frames come from its source",
    "offline": "its source stopped or cannot be reached (reason says why), or its extractor fell silent",
    "failed": "its source cannot work as configured (reason says why); retried on a long backoff",
    "stale": "a polled feed whose image stopped changing (reason says for how many polls)",
    "ended": "a file read to its end",
    "degraded": "online, but every recent result carried an error (reason is the newest)",
    "covered": "online, but the lens is covered (a dim, blurred, featureless picture)",
}
SET_BY: dict[State, Literal["extractor", "sink"]] = {
    **{s: "extractor" for s in REPORTED}, "ended": "extractor",  # with its Eos
    "degraded": "sink", "covered": "sink"}  # and offline with reason SILENT

# the states whose reason is shown (camwire status, status.db keeps the extractor's only for these)
WITH_REASON: frozenset[State] = frozenset({"offline", "failed", "stale", "degraded"})

# how each state is shown by colour in the console and judged by an operator: "ok", "warn"
# (working, but look), "down", "idle" (nothing wrong, nothing coming)
SEVERITY: dict[State, Literal["ok", "warn", "down", "idle"]] = {
    "online": "ok", "degraded": "warn", "covered": "warn", "stale": "warn", "failed": "down",
    "offline": "down", "connecting": "idle", "ended": "idle"}

# the sink's own transitions of what the extractor said, by what happened; a state not listed
# for a cause stays as it is, and so does its reason (sink.cameras LiveCamera.move)
AFTER: dict[str, dict[State, State]] = {
    # its Eos: a file at its end; a failed source keeps saying why
    "eos": {s: "ended" for s in STATES if s != "failed"},
    # a result after the sink found its extractor silent: the extractor is back, and streaming
    "back": {"connecting": "online", "offline": "online"},
}

# what a report means for the camera_online / camera_offline events: None, not known either way
ONLINE: dict[Reported, bool | None] = {"connecting": None, "online": True, "offline": False, "failed": False,
                                       "stale": False}

# each camera_* event (sink.events) and the state it tells: MQTT's retained <prefix>/<camera>/state
EVENT_STATE: dict[str, State] = {"camera_online": "online", "camera_offline": "offline", "camera_failed": "failed",
                                 "camera_covered": "covered", "camera_uncovered": "online"}


def shown(reported: State, reason: str | None, silent: bool, degraded: str | None) -> tuple[State, str | None]:
    """The state shown and its reason: silence first, then result errors, then what the extractor said."""
    if silent:
        return "offline", SILENT
    if reported == "online" and degraded:
        return "degraded", degraded
    return reported, reason


def with_covered(state: State, covered: bool) -> State:
    """``covered`` for an online camera whose lens is covered (camwire status, MQTT), else ``state``."""
    return "covered" if state == "online" and covered else state
