"""The recorder's pauses as the sink tells them: ``recording_paused`` / ``recording_resumed`` in,
the same events out, once per change.

The recorder (recorder.pause) pauses when its free-space floor cannot be met with its own ring
files, and says so with one ``wire.Event`` per camera it records, pushed to the sink's results
address like its ``uploaded`` events: ``recording_paused`` (``reason`` says why) and, once space
is back, ``recording_resumed``. A recorder restarted while the disk is still full says "paused"
again; a sink restarted in between has the state in its ledger (sink.ledger, ledger.db).
Here, per camera:

- an event that changes the state is emitted as it came (its id is the recorder's, unique by
  its send time) and the state kept, with since when, for ``camwire status``
  (:func:`paused_cameras`);
- one that says what is already told (paused again, resumed while not paused) is counted
  ``recorder_events/<type>/repeated`` and not emitted; one older than the newest applied,
  ``stale``.

The state told is the camera's live record's ``recording_paused`` (sink.cameras), the rest its
RecordingTold part. The sink admits the camera first (common.admission, as for any message
about a camera), and drops its record when it forgets it; MAX_CAMERAS bounds the memory all the
same (messages about more are counted ``dropped``). Pure logic: the sink emits what
:meth:`RecordingStates.on_event` returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from camwire.sink.cameras import LiveCameras
from camwire.sink.ledger import FILE, Ledger, read_told
from camwire.common import wire
from camwire.common.counters import Counters

PAUSED, RESUMED = "recording_paused", "recording_resumed"
TYPES = (PAUSED, RESUMED)
MAX_CAMERAS = 10_000
WHAT = "recording"  # the ledger's row


class RecordingTold(msgspec.Struct):
    paused: bool
    ts: float  # the newest event applied (the recorder's clock)
    since: float  # when the present state began
    reason: str | None = None
    event_id: str | None = None


class RecordingStates:
    def __init__(self, ledger: Ledger | None = None, counters: Counters | None = None,
                 cameras: LiveCameras | None = None) -> None:
        self.ledger = ledger if ledger is not None else Ledger(None)
        self.counters = counters if counters is not None else Counters()
        self.cameras = cameras if cameras is not None else LiveCameras()  # the sink's live records, shared

    def on_event(self, e: wire.Event) -> list[wire.Event]:
        """The event to emit (``e`` itself), or none when it tells nothing new."""
        if e.type not in TYPES:
            raise ValueError(f"not a recorder pause event: {e.type}")
        live = self.cameras.get(e.camera)
        told = live.part(RecordingTold) if live is not None else None
        if live is None or told is None:
            if live is None and len(self.cameras) >= MAX_CAMERAS:
                self.counters.add("recorder_events", e.type, "dropped")
                return []
            live = self.cameras.at(e.camera)
            told = live.attach(self.ledger.recall(e.camera, WHAT, RecordingTold) or RecordingTold(False, -1.0, 0.0))
            live.recording_paused = told.paused
        if e.ts <= told.ts:
            self.counters.add("recorder_events", e.type, "stale")
            return []
        told.ts = e.ts
        paused = e.type == PAUSED
        if paused == told.paused:
            self.counters.add("recorder_events", e.type, "repeated")
            return []
        told.paused, told.since, told.reason, told.event_id = paused, e.ts, e.reason, e.id
        live.recording_paused = paused
        self.ledger.keep(e.camera, WHAT, told)
        self.counters.add("recorder_events", e.type, "emitted")
        return [e]


def paused_cameras(data_dir: Path) -> list[dict[str, Any]]:
    """The cameras whose recording is paused as the sink in ``data_dir`` last told it: ``camera``,
    ``since`` (s since the epoch), ``reason``, ``event_id``; [] where there is no ledger."""
    return [r for r in read_told(data_dir / FILE, WHAT) if r.get("paused")]
