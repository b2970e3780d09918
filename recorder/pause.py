"""Recording paused for space: what the recorder does when the free-space floor (``--min-free``)
cannot be met with its own ring files.

The floor deletes ring files only (recorder.retention); kept clips and snapshots are evidence and
go by their own budgets and ages alone. So when something else holds the volume's space (a
foreign file, kept clips within a generous budget), deleting would only eat evidence: recording
pauses instead. Every frame that comes while paused is counted as ``dropped/<camera>/paused`` and
as a gap (in the first segment's row after the pause), open files are closed, and it says so:

- the log (an error when it pauses, a line when it resumes), the counter ``pauses``, the gauge
  ``paused`` (metrics) and ``paused`` in the ``--stats`` file;
- with ``--sink``, one ``Event`` per camera recorded, of type ``recording_paused`` when it pauses
  (and for a camera first seen while paused) and ``recording_resumed`` when it resumes (and once per
  camera after a start, so a pause told before a restart is ended), sent over
  the recorder's PUSH to the results address of the sink that owns the camera (common.sinks); the
  sink emits them as its own (events file, MQTT, webhook). A camera name is never empty on the
  wire, hence one per camera.

It resumes by itself once the volume has RESUME_AT times the floor free again: the margin keeps a
recorder whose first new file would put it back below the floor from pausing and resuming over
and over.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any


from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.sinks import Sinks
from camwire.common.ids import event_id

PAUSED, RESUMED = "recording_paused", "recording_resumed"  # the sink emits both as they are
RESUME_AT = 1.5  # resume once this many times the floor is free
MAX_UNSENT = 4096  # events waiting for the sink (no sink yet); past this the oldest go, counted


def judge(paused: bool, floor_met: bool, free: int, size: int, min_free: float) -> bool:
    """Whether recording is paused after a retention round: it pauses when the ring's own files
    could not bring ``free`` up to the floor, and resumes only once ``free`` is RESUME_AT times the
    floor (a ``min_free`` of 0 never pauses, and resumes a paused recorder)."""
    if not paused:
        return not floor_met
    return free < int(size * min_free * RESUME_AT)


class Pause:
    """The pause state and the events that tell of it (sent by :meth:`send`, on the main loop)."""

    def __init__(self, counters: Counters, log: Any, notify: bool) -> None:
        self.counters, self.log, self.notify = counters, log, notify
        self.paused = False
        self.reason = ""
        self.told: set[str] = set()  # cameras told of the present pause
        # cameras told they record, since this process started or since the last resume: a
        # recorder restarted after space came back tells each camera once, so a sink that still
        # shows the pause from before the restart learns it is over (the sink drops a resume for a
        # camera it never saw paused)
        self.recording: set[str] = set()
        self.unsent: deque[wire.Event] = deque()

    def change(self, paused: bool, reason: str, cameras: list[str]) -> bool:
        """Pause or resume (True when that is a change), telling ``cameras``."""
        if paused == self.paused:
            return False
        self.paused, self.reason = paused, reason
        if paused:
            self.recording.clear()
            self.counters.add("pauses")
            self.log.error("recording paused: the free-space floor cannot be met with the ring's own files; "
                           "kept clips are not deleted for it", reason=reason, cameras=len(cameras))
            for camera in cameras:
                self.camera(camera)
        else:
            self.log.info("recording resumed: free space is back", reason=reason)
            for camera in sorted(self.told):
                self._event(RESUMED, camera, reason)
            self.recording |= self.told
            self.told.clear()
        return True

    def camera(self, camera: str) -> None:
        """A camera's frame came: while paused it is told so once per pause, otherwise once that it
        records (after a start, see ``recording``)."""
        if self.paused:
            if camera not in self.told:
                self.told.add(camera)
                self._event(PAUSED, camera, self.reason)
        elif camera not in self.recording:
            self.recording.add(camera)
            self._event(RESUMED, camera, "recording")

    def _event(self, etype: str, camera: str, reason: str) -> None:
        if not self.notify:
            return
        now = time.time_ns()
        self.unsent.append(wire.Event(id=event_id(now, camera, etype), type=etype, camera=camera, ts=now / 1e9,
                                      reason=reason))
        if len(self.unsent) > MAX_UNSENT:  # no sink for a long time and many cameras: the oldest go
            dropped = self.unsent.popleft()
            self.counters.add("notices", dropped.type, "dropped")

    def send(self, sinks: Sinks) -> None:
        """The events waiting, each to its camera's sink, without blocking: those a sink cannot take
        now (none connected yet, or its queue full) wait for the next round (common.sinks.send_events)."""
        for event in sinks.send_events(list(self.unsent)):
            self.unsent.remove(event)
            self.counters.add("notices", event.type, "sent")
