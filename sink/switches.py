"""Each camera's switches as the sink keeps them: ``detect``, ``record`` and ``snapshots``
(common.wire.SWITCHES), each on until someone turns it off.

What sets one: a ``wire.Switch`` on the sink's PULL (the console's, web.sink_link), or a
``<prefix>/<camera>/<switch>/set`` on MQTT (sink.outputs.mqtt: queued by paho's thread, handed
in on the sink's own). Both come to :meth:`Switches.set`: a change is kept and told as one
``camera_switch`` event (``reason`` ``SWITCH=on|off by WHO``, common.wire.switch_reason), so the
events file says who set what and when; the setting in force asked again changes nothing and
tells nothing (the sink counts ``switches/<switch>/changed`` and ``.../unchanged``, and logs
``camera switch set`` with ``camera``, ``switch``, ``on`` and ``by``).

What each does (sink.daemon):

- ``detect`` off: the camera's results make no tracked objects (those it has end at once) and
  no live boxes; its state, covered and motion go on as before. On again: tracking starts afresh.
- ``snapshots`` off: no snapshot file for its events (they go out with ``snapshot`` None), and
  none of its objects' frames (sink.store.frames).
- ``record`` off: nothing in the sink. The recorder, subscribed to the sink's events, stops
  writing the camera (recorder.record_switch). Whenever the recorder reports in on a camera (its
  ``recording_paused`` / ``recording_resumed``, sent once per camera after each of its starts),
  and every RETELL_EVERY_S for every camera it knows, the sink sends the event that set its
  ``record`` again on PUB alone (:meth:`Switches.told`; one never set is told ``on``), so a
  recorder that was down or cut off when it was set learns it, and one that kept an ``off`` the
  sink has lost follows the sink.

Kept where the sink keeps what its events told: ledger.db's ``told`` table (sink.ledger, ``what``
``switches``, one row per camera ever set), written before the event that tells a change
leaves, so a restarted sink has them; all are read back at start. status.db shows them
(sink.camera_status: the ``switches`` column). Pure bookkeeping: the sink emits what
:meth:`Switches.set` returns.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Callable

import msgspec

from camwire.common import wire
from camwire.sink.ledger import Ledger, read_told

WHAT = "switches"  # the ledger's row
TYPE = "camera_switch"  # the event that tells a change


class Setting(msgspec.Struct, frozen=True):
    """One switch as last set: on or off, by whom, when (s since the epoch), and the event that told it."""

    on: bool
    by: str
    ts: float
    event_id: str


class CameraSwitches(msgspec.Struct):
    """The switches of a camera that were ever set; one not here is on."""

    set: dict[str, Setting] = {}


class Switches:
    """Every camera's switches. ``ids``: sink.events.EventIds, shared with the sink's other events."""

    def __init__(self, ledger: Ledger, ids: Callable[[int, str, str], str]) -> None:
        self.ledger, self.ids = ledger, ids
        self.cameras: dict[str, CameraSwitches] = {}  # the cameras with a switch ever set
        if ledger.path is not None:
            try:
                rows = read_told(ledger.path, WHAT)
            except sqlite3.Error:  # a damaged or unreadable ledger: all on, as a first start would be
                rows = []
            for row in rows:
                try:
                    self.cameras[row["camera"]] = msgspec.convert(row, CameraSwitches)
                except msgspec.ValidationError:
                    continue  # a row from another version: that camera starts with its switches on

    def on(self, camera: str, switch: str) -> bool:
        cam = self.cameras.get(camera)
        setting = cam.set.get(switch) if cam is not None else None
        return setting is None or setting.on

    def shown(self, camera: str) -> dict[str, bool]:
        """``{"detect": True, "record": False, "snapshots": True}``: what status.db and MQTT show."""
        return {switch: self.on(camera, switch) for switch in wire.SWITCHES}

    def off(self) -> dict[str, list[str]]:
        """The cameras with a switch off, and which (``--stats``)."""
        out = {camera: [s for s in wire.SWITCHES if not self.on(camera, s)] for camera in self.cameras}
        return {camera: switches for camera, switches in sorted(out.items()) if switches}

    def set(self, msg: wire.Switch) -> wire.Event | None:
        """Apply ``msg``: the ``camera_switch`` event to emit, or None when it is set so already."""
        if self.on(msg.camera, msg.switch) == msg.on:
            return None
        now_ns = time.time_ns()
        setting = Setting(msg.on, msg.by, now_ns / 1e9, self.ids(now_ns, msg.camera, TYPE))
        cam = self.cameras.setdefault(msg.camera, CameraSwitches())
        cam.set[msg.switch] = setting
        self.ledger.keep(msg.camera, WHAT, cam)  # on disk before the event is anywhere (the sink's emit)
        return _event(msg.camera, msg.switch, setting)

    def told(self, camera: str, switch: str) -> wire.Event:
        """The event that set ``switch`` as it is now (the same id); for one never set, an event
        saying it is on (``SWITCH=on by default``), so a recorder that kept an ``off`` this sink no
        longer knows (its ledger lost, or none kept) follows the sink, which owns the switches."""
        cam = self.cameras.get(camera)
        setting = cam.set.get(switch) if cam is not None else None
        if setting is None:
            setting = Setting(True, "default", 0.0, f"{camera}-{switch}-default")
        return _event(camera, switch, setting)


def _event(camera: str, switch: str, setting: Setting) -> wire.Event:
    return wire.Event(id=setting.event_id, type=TYPE, camera=camera, ts=setting.ts,
                      reason=wire.switch_reason(switch, setting.on, setting.by))
