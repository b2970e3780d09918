"""A camera's ``record`` switch, as the recorder keeps it: an operator turns a camera's recording
off and on again from the console or MQTT without editing camwire.toml.

The sink owns the switches (sink.switches) and tells each change as a ``camera_switch`` event on
its PUB, which the recorder subscribes to (``--events``); the event's ``reason`` says which switch
and how (``record=off by console 10.0.0.7``, common.wire.switch_told). Here:

- an event for ``record`` is applied as it says: the sink owns the switch and its PUB is one
  ordered stream, so what it says last is in force (it says each camera's again each time the
  recorder reports in on it and every minute, so a recorder that was down or cut off when it was
  set learns it, and an ``off`` kept here that the sink no longer has goes). It is kept in
  ``index.db``'s ``record_switch`` table, so a restarted recorder stays off until told;
- a camera switched off is in :attr:`RecordSwitch.off`, which the ring reads (recorder.ring: its
  frames counted ``dropped/<camera>/switched_off``, not recorded, and not a gap: nothing was lost
  that was meant to be kept); the recorder closes its open file when it goes off.

A full disk that refuses the index leaves the setting applied in memory and written at a later
round (:meth:`RecordSwitch.flush`); settings kept before are read once the index opens.
"""

from __future__ import annotations

import sqlite3

from camwire.common import wire
from camwire.recorder.index import Index


class RecordSwitch:
    """Each camera's record switch as last told; :attr:`off` the cameras not recorded now."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.settings: dict[str, tuple[bool, float]] = {}  # camera -> (on, the event's time)
        self.off: set[str] = set()  # the cameras not recorded now (the ring reads it)
        self.unwritten: dict[str, tuple[bool, float, str | None]] = {}  # the index refused them so far
        self.loaded = False
        self.flush()

    def on_event(self, event: wire.Event) -> bool | None:
        """A ``camera_switch`` event for ``record``: the camera's new setting (True: on) when it
        changes; None for any other event, or one that changes nothing."""
        told = wire.switch_told(event)
        if told is None or told[0] != "record":
            return None
        self.flush()  # what was kept before is read first, once the index opens
        before = self.settings.get(event.camera)
        on = told[1]
        if on == (before is None or before[0]):
            return None  # said again (the sink retells it): nothing to write
        self.settings[event.camera] = (on, event.ts)
        self._apply(event.camera, on)
        self.unwritten[event.camera] = (on, event.ts, event.reason)
        self.flush()
        return on

    def flush(self) -> None:
        """What the index refused so far, written; the settings kept before read, once it opens."""
        try:
            if not self.loaded:
                for camera, (on, ts) in self.index.record_switches().items():
                    if camera not in self.settings:  # what the sink said since the start comes first
                        self.settings[camera] = (on, ts)
                        self._apply(camera, on)
                self.loaded = True
            while self.unwritten:
                camera, (on, ts, reason) = next(iter(self.unwritten.items()))
                self.index.set_record_switch(camera, on, ts, reason)
                del self.unwritten[camera]
        except sqlite3.OperationalError:  # a full disk: tried again at the next round
            return

    def _apply(self, camera: str, on: bool) -> None:
        if on:
            self.off.discard(camera)
        else:
            self.off.add(camera)
