"""The sink's view of each camera's motion: ``wire.Motion`` in, ``motion_start``/``motion_end`` out.

The extractor sees every frame and decides the state (extractor.motion: motion starts in the
first moving frame and ends after its off delay); it sends each change and repeats the newest
with every status heartbeat. The messages ride through the ventilator and any worker, so two of
one camera may arrive out of order, and the repeats arrive again and again. Here:

- a message is applied in capture-time order: one older than the newest applied is a repeat or
  late, and changes nothing (counted as ``motion_messages/<camera>/stale``);
- a start after an end (or the first message) makes one ``motion_start``; an end after a start
  one ``motion_end``. An end whose start never came (it is still on its way through another
  worker, or was lost) makes both, the start at its ``started_ns``, so every stretch of motion
  is one start and one end, whatever the order;
- a sink that starts while a camera's motion is off learns that silently: no event for a
  stretch that ended before it was there. A stretch that started after the sink did (its
  ``started_ns`` against the sink's start) is told whole, though its end is the first word of it
  heard: its start was lost on the way (once: a camera forgotten and met again is not told it
  twice);
- with a ``ledger`` (sink.ledger), the state told is kept before its events leave and
  recalled when a camera is first met: a restarted sink knows the repeats of a state its
  previous run told (counted ``stale``) instead of telling the stretch's start again, and an end
  that came while it was down still ends the stretch it had started.

Events carry the moving boxes (``detections`` labelled ``motion``) of the frame where motion
started. The state told is the camera's live record's ``motion`` (sink.cameras), which status.db
shows. Pure logic, no sockets: the sink calls ``on_motion`` (sink.daemon).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import msgspec

from camwire.sink.cameras import LiveCameras
from camwire.sink.ledger import Ledger
from camwire.common import wire
from camwire.common.counters import Counters

START, END = "motion_start", "motion_end"
MAX_CAMERAS = 10_000  # the sink's own --max-cameras bounds the cameras it admits long before this


@dataclass(slots=True)
class MotionPart:
    """What the motion state keeps of a camera besides its live record's ``motion``."""

    newest_ns: int = -1  # capture time of the newest message applied


class MotionTold(msgspec.Struct):
    """A camera's motion as the ledger keeps it: the record's ``motion`` and its MotionPart."""

    active: bool
    newest_ns: int


class MotionStates:
    """Per camera: the motion state the events have told so far. ``ids(ts_ns, camera, type)``
    makes event ids (sink.events.EventIds: unique with the sink's other events)."""

    def __init__(self, ids: Callable[[int, str, str], str], counters: Counters | None = None,
                 ledger: Ledger | None = None, cameras: LiveCameras | None = None,
                 since_ns: int | None = None) -> None:
        self.ids = ids
        # when this sink started (wall clock, as capture times are): a stretch of motion that
        # started before it, and ended before its first word came, is not this sink's to tell
        self.since_ns = time.time_ns() if since_ns is None else since_ns
        # cameras met in this run: one forgotten (idle) and met again with no ledger to recall its
        # state from is told nothing new by the repeat of an end it told already
        self.met: set[str] = set()
        self.counters = counters if counters is not None else Counters()
        self.ledger = ledger if ledger is not None else Ledger(None)
        self.cameras = cameras if cameras is not None else LiveCameras()  # the sink's live records, shared

    def on_motion(self, m: wire.Motion) -> list[wire.Event]:
        events = self._apply(m)
        if events:  # kept before they leave (the sink commits the ledger first)
            live = self.cameras[m.camera]
            self.ledger.keep(m.camera, "motion", MotionTold(live.motion, live.parts[MotionPart].newest_ns))
        return events

    def _apply(self, m: wire.Motion) -> list[wire.Event]:
        live = self.cameras.get(m.camera)
        cam = live.part(MotionPart) if live is not None else None
        if live is None or cam is None:
            if live is None and len(self.cameras) >= MAX_CAMERAS:
                return []
            live = self.cameras.at(m.camera)
            told = self.ledger.recall(m.camera, "motion", MotionTold)
            live.motion = told.active if told else False
            cam = live.attach(MotionPart(told.newest_ns if told else -1))
            started = m.started_ns if m.started_ns is not None else m.ts_ns
            again = m.camera in self.met
            if len(self.met) < 4 * MAX_CAMERAS:
                self.met.add(m.camera)
            if told is None and not m.active and (started < self.since_ns or again):  # off already when we came
                cam.newest_ns = m.ts_ns
                return []
        if m.ts_ns <= cam.newest_ns:
            self.counters.add("motion_messages", m.camera, "stale")
            return []
        cam.newest_ns = m.ts_ns
        if m.active:
            if live.motion:
                return []  # two starts without an end between: the end was lost, the state is on
            live.motion = True
            return [self._event(START, m, m.ts_ns)]
        events = []
        if not live.motion:  # its start is late or lost: the whole stretch, as it was
            started = m.started_ns if m.started_ns is not None else m.ts_ns
            events.append(self._event(START, m, min(started, m.ts_ns)))
        live.motion = False
        events.append(self._event(END, m, m.ts_ns))
        return events

    def ended(self, camera: str) -> bool:
        """Whether the camera's motion is off (or was never heard of)."""
        live = self.cameras.get(camera)
        return live is None or not live.motion

    def _event(self, etype: str, m: wire.Motion, ts_ns: int) -> wire.Event:
        self.counters.add("events", etype)
        boxes = m.boxes if etype == START else []
        return wire.Event(id=self.ids(ts_ns, m.camera, etype), type=etype, camera=m.camera, ts=ts_ns / 1e9,
                          seq=m.seq if ts_ns == m.ts_ns else None,
                          detections=[wire.Detection("motion", 1.0, box) for box in boxes])
