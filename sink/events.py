"""What results and camera status become: events (common.wire.Event). Pure logic, no sockets or files.

In: the typed messages the sink receives (wire.Result, wire.Status, wire.Eos). Out: wire.Event,
which the sink writes as a JSON line and publishes as it is (``wire.pack``)::

    Event(id, type, camera, ts (capture time, s since the epoch), seq,
          detections=[Detection(label, confidence, box=(x1, y1, x2, y2))], snapshot, worker,
          detector, reason, scene)

- ``id`` is unique forever (common.ids.event_id: capture time in ns, camera, type), so a restart
  never reuses one, and a snapshot named after it is never overwritten. With a ``ledger``
  (sink.ledger, the sink's ledger.db) the ``n`` given and each camera's state as told
  (online, covered, failed, silent) outlive the sink: restarted, it tells no change twice.
- ``object``: a tracked object's start, updates and end come from sink.tracking, not
  from here; its ids come from the same :class:`EventIds`.
- ``motion_start`` / ``motion_end`` come from the extractor's motion state
  (sink.motion_state). Covered and online/offline events are never held back.
- ``camera_covered`` after ``covered_after`` consecutive covered frames (the detector says how
  many), one ``camera_uncovered`` after as many clear ones: one event each way, never a stream.
- ``camera_offline`` / ``camera_online`` when an extractor reports a change of state, and
  ``camera_failed`` (with FFmpeg's reason) once when a source turns out not to work as
  configured (retrying will not help; the extractor retries on a long backoff all the same), and ``camera_offline`` with reason ``extractor silent`` when
  an online camera's extractor has sent nothing (no result, no status) for ``silent_after_s``:
  a dead extractor cannot report itself. The next result or status brings it back online.
Results of one camera may arrive out of order from different workers; a result older than one
already seen (by capture time, which, unlike seq, an extractor restart does not send
back to 0) does not move the covered state back.

The camera's record is the sink's live one (sink.cameras): covered and silent are kept there,
where status.db reads them; the rest of what the events need is its :class:`EventsPart`.
At most ``max_cameras`` cameras are remembered: messages about more are counted
(``unknown_cameras``) and ignored, so a sender inventing names cannot grow the sink's memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec

from camwire.sink.cameras import LiveCamera, LiveCameras
from camwire.sink.ledger import Ledger
from camwire.common.rules import Rules
from camwire.common import wire
from camwire.common.camera_state import ONLINE, SILENT
from camwire.common.counters import Counters
from camwire.common.ids import event_id


@dataclass(slots=True)
class EventsPart:
    """What the events keep of a camera besides its live record's ``covered`` and ``silent``."""

    last_ts_ns: int = -1  # capture time of the newest result: unlike seq, it never goes back on a restart
    run: int = 0  # consecutive frames disagreeing with the record's ``covered``
    online: bool | None = None
    results: int = 0
    expected: int | None = None  # set by eos: results the sink will get in all
    failed: bool = False  # the extractor said the source cannot work as configured
    ended: bool = False  # eos came: silence is expected from now on
    heard: float = 0.0  # monotonic time of the last result or status


class CameraTold(msgspec.Struct):
    """What the events have told of a camera, kept in the ledger: a restarted sink that hears
    "online" again from a camera it had told online says nothing (sink.ledger)."""

    online: bool | None = None
    covered: bool = False
    failed: bool = False
    silent: bool = False


MAX_IDS_KEPT = 65536  # (camera, type, ns) keys remembered for ids; far more than any burst


class EventIds:
    """``ids(ts_ns, camera, type)``: common.ids.event_id, with ``n`` telling apart two events of
    one camera and type at the same nanosecond, in whatever order they come (two detectors'
    objects of one camera interleave in time), and across restarts: with a ``ledger``
    (sink.ledger), the ``n`` given before a restart are known after it."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = ledger
        # (camera, type, ts_ns) -> the last n given
        self._last: dict[tuple[str, str, int], int] = ledger.recent_ids() if ledger is not None else {}

    def __call__(self, ts_ns: int, camera: str, etype: str) -> str:
        key = (camera, etype, ts_ns)
        n = self._last.get(key, -1) + 1
        self._last[key] = n
        if self.ledger is not None:
            self.ledger.keep_id(camera, etype, ts_ns, n)
        if len(self._last) > MAX_IDS_KEPT:  # the oldest nanoseconds first: they do not come again
            for old in sorted(self._last, key=lambda k: k[2])[:MAX_IDS_KEPT // 2]:
                del self._last[old]
        return event_id(ts_ns, camera, etype, n)


class Events:
    def __init__(self, rules: Rules | None = None, counters: Counters | None = None,
                 max_cameras: int = 1000, silent_after_s: float = 15.0, ledger: Ledger | None = None,
                 cameras: LiveCameras | None = None) -> None:
        self.rules = rules or Rules()
        self.counters = counters if counters is not None else Counters()
        self.max_cameras = max_cameras
        self.silent_after_s = silent_after_s
        self.cameras = cameras if cameras is not None else LiveCameras()  # the sink's live records, shared
        self.ledger = ledger if ledger is not None else Ledger(None)
        self.ids = EventIds(ledger)

    def admit(self, name: str) -> bool:
        """True for a camera already known or one there is room for; the rest are counted."""
        live = self.cameras.get(name)
        if live is not None and live.part(EventsPart) is not None:
            return True
        if live is None and len(self.cameras) >= self.max_cameras:
            self.counters.add("unknown_cameras")
            return False
        self._restore(self.cameras.at(name))
        return True

    def _restore(self, live: LiveCamera) -> None:
        """A camera met now: with what the events told of it before (a restart, or forgotten while idle)."""
        told = self.ledger.recall(live.name, "camera", CameraTold) or CameraTold()
        live.covered, live.silent = told.covered, told.silent
        live.attach(EventsPart(heard=time.monotonic(), online=told.online, failed=told.failed))

    def camera(self, name: str) -> tuple[LiveCamera, EventsPart]:
        """The camera's live record and its events part; for a camera not admitted, ones kept nowhere."""
        if not self.admit(name):
            return LiveCamera(name), EventsPart()
        live = self.cameras[name]
        part = live.part(EventsPart)
        assert part is not None  # admit attached it
        return live, part

    def on_result(self, r: wire.Result, now: float | None = None) -> list[wire.Event]:
        live, cam = self.camera(r.camera)
        cam.heard = time.monotonic() if now is None else now
        cam.results += 1
        self.counters.add("results", r.camera)
        if r.error:
            self.counters.add("result_errors", r.camera)
        events: list[wire.Event] = []
        if live.silent:  # its extractor speaks again, and streams
            live.silent = False
            live.move("back")
            if cam.online is False:
                cam.online = True
                events.append(self._event("camera_online", r.camera, r.ts_ns))
        # newer than any result yet? capture time, not seq: a restarted extractor starts at seq 0 again
        fresh = r.ts_ns > cam.last_ts_ns
        cam.last_ts_ns = max(cam.last_ts_ns, r.ts_ns)
        flags = r.flags
        if flags.covered is not None and fresh:
            if flags.covered != live.covered:
                cam.run += 1
                if cam.run >= flags.covered_after:
                    live.covered, cam.run = not live.covered, 0
                    events.append(self._event("camera_covered" if live.covered else "camera_uncovered", r.camera,
                                              r.ts_ns, r, scene=flags.scene))
            else:
                cam.run = 0
        return events  # detections are tracked objects: sink.tracking

    def on_status(self, s: wire.Status, now: float | None = None) -> list[wire.Event]:
        live, cam = self.camera(s.camera)
        cam.heard = time.monotonic() if now is None else now
        live.silent = False
        was_failed, cam.failed = cam.failed, s.state == "failed"
        online = ONLINE[s.state]
        if online is None:
            return []  # not yet known either way
        if cam.failed:  # the source cannot work as configured: said once, not at every retry
            cam.online = False
            if was_failed:
                return []
            return [self._event("camera_failed", s.camera, s.ts_ns, reason=s.reason or s.last_error or "failed")]
        if cam.online == online:
            return []
        cam.online = online
        if online:
            if cam.ended:
                # back after its end (a file camera restarted by a reload): its results count anew,
                # and the sink no longer finishes its objects on each one (drained). Only then: a
                # first "online" may come after results that rode through another worker
                cam.ended, cam.expected, cam.results = False, None, 0
            return [self._event("camera_online", s.camera, s.ts_ns)]
        reason = s.reason or s.last_error or s.state
        return [self._event("camera_offline", s.camera, s.ts_ns, reason=reason)]

    def on_eos(self, e: wire.Eos) -> None:
        _live, cam = self.camera(e.camera)
        cam.ended = True
        cam.expected = e.results if e.results is not None else e.sent

    def silence_check(self, now: float | None = None) -> list[wire.Event]:
        """``camera_offline`` (reason ``extractor silent``) for each online camera not heard from
        for ``silent_after_s``; ``now`` is monotonic. The live record says ``silent`` from then on."""
        now = time.monotonic() if now is None else now
        out = []
        for name, live in self.cameras.items():
            cam = live.part(EventsPart)
            if (cam is not None and cam.online and not cam.ended and not live.silent
                    and now - cam.heard >= self.silent_after_s):
                live.silent, cam.online = True, False
                out.append(self._event("camera_offline", name, time.time_ns(), reason=SILENT))
        return out

    def drained(self, camera: str) -> bool:
        """Every result of an ended camera is in, or its source failed and it ended."""
        live = self.cameras.get(camera)
        cam = live.part(EventsPart) if live is not None else None
        if cam is None or not cam.ended:
            return False
        return cam.failed or cam.expected is None or cam.results >= cam.expected

    def _event(self, etype: str, camera: str, ts_ns: int, r: wire.Result | None = None,
               detections: list[wire.Detection] | None = None, reason: str | None = None,
               scene: str | None = None) -> wire.Event:
        """Called once the camera's state has changed: the state is kept with the event (sink.ledger)."""
        self.counters.add("events", etype)
        live = self.cameras.get(camera)
        cam = live.part(EventsPart) if live is not None else None
        if live is not None and cam is not None:
            self.ledger.keep(camera, "camera", CameraTold(cam.online, live.covered, cam.failed, live.silent))
        return wire.Event(id=self.ids(ts_ns, camera, etype), type=etype, camera=camera, ts=ts_ns / 1e9,
                          seq=r.seq if r is not None else None, detections=list(detections or []),
                          worker=r.worker if r is not None else None, detector=r.detector if r is not None else None,
                          reason=reason, scene=scene)
