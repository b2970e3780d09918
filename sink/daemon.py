"""``camwire sink``: turns workers' results into events, snapshots and camera status.

Sockets (common.daemon owns the loop):
  - PULL (bound, ``--bind``): common.wire ``Result`` from workers (one part, or two with the
    frame's pixels, an LZ4 block or raw: common.pixels.Pixels; or one naming the frame's
    shared-memory slot, copied out and released at once: sink.source_frames), and relayed through the workers the
    extractors' ``Status``, ``Eos`` and ``Motion`` and the ventilator's ``Workers``; from the
    recorder, ``Event`` of type ``uploaded`` (its kept clips in object storage), emitted as the
    sink's own, and ``recording_paused`` / ``recording_resumed`` (sink.recording_state: once per
    change, the state kept for ``camwire status``); from the console (web.sink_link), ``Switch``:
    a camera's detect, record or snapshots switch set (sink.switches; MQTT's command topics take
    the same path), and ``Reviewed``: objects marked reviewed, kept in ``--data-dir``/reviews.db
    (sink.store.reviews). Anything else is counted under ``malformed/<reason>`` and dropped.
  - PUB (bound, ``--publish``): every ``Event``, one part, ``wire.pack(event)``; and, when the
    recorder reports in on a camera and every minute for each camera, the event that set its
    ``record`` switch again (sink.switches).
  - PUB (bound, ``--publish-detections``): every ``Result`` as it arrives, one part, without its
    pixels (``image`` None) and with the detections the camera's masks drop taken out: boxes for
    live views (the web console). Nothing is sent while no one subscribes.
Each result goes to sink.events (covered, online, motion) at once, and through a
per-camera reorder window into the object tracker (sink.tracking: ``object`` events, a
start, updates and an end per tracked object). Each event is also a JSON line in ``--events``
(sink.store.eventlog), sent to ``--mqtt`` (with Home Assistant's discovery, sink.outputs.homeassistant),
``--webhook`` (sink.outputs.mqtt) and ``--kafka`` (sink.outputs.kafka), and with the pixels of its frame, a
snapshot under ``--data-dir`` (sink.store.snapshots; an object's with its box drawn; events name it
relative to ``--data-dir``).

A result's pixels are checked on arrival as far as can be without decompressing them (a part
that cannot be what ``Result.image`` declares is counted ``malformed/bad_pixels`` and the result
goes on without it) and kept compressed: the tracker holds each object's best frame, and a JPEG
is made only for a snapshot or an object's frame written (``snapshot_pixels/received`` against
``snapshot_pixels/encoded``; the encoding's time in ``camwire_sink_snapshot_encode_seconds``).
Each camera's capture-to-result time, a moving average, is ``camwire_sink_capture_to_result_seconds``.

``--data-dir``/status.db holds each camera's, each worker's and the sink's own status
(sink.camera_status); ``--data-dir``/ledger.db what the events have told (sink.ledger:
each camera's motion, online, covered and recording state, and the ids given), written before an
event leaves, so a restarted sink repeats no event and no id. With ``[upload]`` (common.upload)
its snapshots and, at each object's end, the object's frames (sink.store.frames) go to object
storage, and the ``uploaded`` events come back out here.

A full or failing disk never stops events: failed writes are counted (``write_errors/<what>``),
logged once per interval, shown in status.db and the metrics, and the sink goes on delivering
on PUB, MQTT and the webhook; it also starts on a full disk. Everything it keeps is bounded:
snapshots by age and bytes, ``--events`` by size (rotated; SIGHUP reopens it for logrotate),
cameras by common.admission: the file's cameras (and ``--exit-when-drained``'s) always have a
place, any other name takes one from a pool of ``--max-cameras`` and is forgotten after
``--camera-idle`` without a message (its objects end, and every table here lets it go: events,
tracking, motion, status.db's row, Home Assistant's entities, its latency series; its counters
fold into ``other``). A message for a new name while the pool is full is counted under
``cameras_refused/pool_full/<peer>`` and dropped: invented names cannot lock a camera out.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import zmq
from prometheus_client.core import GaugeMetricFamily

from camwire.sink.camera_status import FLUSH_S, StatusBook, StatusPart
from camwire.sink.store.disk import WriteErrors
from camwire.sink.store.eventlog import EventLog
from camwire.sink.source_frames import SourceFrames
from camwire.sink.cameras import LiveCameras
from camwire.sink.events import Events, EventsPart
from camwire.sink.outputs.kafka import POLL_EVERY_S as KAFKA_POLL_S, KafkaOutput, kafka_address
from camwire.sink import served
from camwire.sink.ledger import FILE as LEDGER_FILE, Ledger
from camwire.sink.motion_state import MotionStates
from camwire.sink.outputs.mqtt import MqttOutput
from camwire.sink.outputs.webhook import WebhookOutput, origin
from camwire.sink.recording_state import TYPES as RECORDING_TYPES, RecordingStates
from camwire.sink.switches import Switches
from camwire.common.rules import load_rules
from camwire.sink.store.reviews import FILE as REVIEWS_FILE, Reviews
from camwire.sink.store.snapshots import SnapshotStore
from camwire.sink.store.frames import Frames
from camwire.sink.tracking import Snapshot, Tracking, areas_from_config
from camwire.common import wire
from camwire.common.admission import LABELS as ADMISSION_LABELS, Admission
from camwire.common.config import Config
from camwire.common.daemon import Daemon
from camwire.common.metrics import CAPTURE_EMA_ALPHA, CAPTURE_TO_RESULT, EVENT_LATENCY, RESULT_LATENCY
from camwire.common.pixels import Pixels
from camwire.common.paths import name_list
from camwire.common.settings import RunSettings, SinkSettings
from camwire.common.settings.sink import EVENTS_KEEP
from camwire.common.upload import SINK_WHAT, Uploader, snapshot_parts

PRUNE_EVERY_S = 60.0
RELEASE_EVERY_S = 0.25  # held results past the reorder window's time bound go on this often
CLOSE_DRAIN_ROUNDS = 100  # of the skeleton's bounded drains, at exit
UPLOADED_EVERY_S = 0.2  # uploaded events are taken from the uploader's threads this often
COMMANDS_EVERY_S = 0.1  # switches set on MQTT are taken from paho's thread this often
RETELL_EVERY_S = 60.0  # each camera's record switch told again on PUB (a recorder that missed one)
# a result whose pixels a worker left in shared memory that the sink could not copy (no snapshot of
# that frame; the result goes on): said once a minute per cause
SHM_UNREAD = {
    "shm_elsewhere": "a worker left a result's pixels in shared memory this sink cannot map: give the sink "
                     "the workers' /dev/shm (a container: --ipc=host) or give the workers an address of it "
                     "that is not on loopback",
    "shm_gone": "a result's pixels were no longer in shared memory when it arrived (the sink is far behind)",
    "shm_denied": "a worker left a result's pixels in shared memory of another user's: run the sink as the "
                  "extractors' user (the units: User=camwire)",
    "bad": "a result named shared memory that is not a camwire frame's",
}
def check(args: SinkSettings | RunSettings) -> None:
    """What the sink would refuse, judged before it starts (camwire.cli, check-config, a reload):
    an address without a transport, a ``--rules`` file that does not load, an ``--mqtt`` URL
    of another form. ValueError naming the flag; reads the rules file, opens no socket.
    ``camwire run`` passes its own flags too: only those set are judged."""
    from camwire.sink.outputs.mqtt import mqtt_address
    from camwire.common.sockets import check_addresses

    check_addresses(args, "bind", "publish", "publish_detections")
    if getattr(args, "rules", None):
        try:
            load_rules(args.rules)
        except OSError as exc:
            raise ValueError(f"--rules {args.rules}: cannot read: {exc.strerror}") from None
        except ValueError as exc:
            raise ValueError(f"--rules {exc}") from None
    if getattr(args, "mqtt", None):
        mqtt_address(args.mqtt)
    if getattr(args, "kafka", None):
        kafka_address(args.kafka)
    elif getattr(args, "kafka_option", None):
        raise ValueError("--kafka-option: only with --kafka")
    if getattr(args, "webhook", None) and urlsplit(args.webhook).scheme not in ("http", "https"):
        raise ValueError(f"--webhook: an http:// or https:// URL, not {origin(args.webhook)}")
    upload = _upload(args)
    if upload is not None and not getattr(args, "data_dir", None):
        raise ValueError("--data-dir: [upload] needs the sink's --data-dir (its snapshots, frames and uploads.db "
                         "live there)")


def _upload(args: SinkSettings | RunSettings) -> Any:
    """The file's [upload] when it asks the sink for something (snapshots, frames), else None."""
    cfg = getattr(args, "config", None)
    upload = cfg.parts.get("upload") if cfg is not None else None
    return upload if upload is not None and set(upload.what) & set(SINK_WHAT) else None


LABELS = {"results": ("camera",), "result_errors": ("camera",), "suppressed": ("camera", "reason"),
          "events": ("type",), "outputs": ("output", "outcome"), "write_errors": ("what",),
          "snapshots": ("outcome",), "unknown_cameras": (), "late": ("camera",), "reordered": ("camera",),
          **ADMISSION_LABELS,
          "objects": ("camera", "phase"),
          "motion_messages": ("camera", "what"), "uploads": ("outcome",), "recorder_events": ("type", "outcome"),
          "snapshot_pixels": ("outcome",), "switches": ("switch", "outcome"), "reviews": ("outcome",)}

_json = msgspec.json.Encoder()


class Sink:
    """Everything the sink knows and writes; ``handle`` takes one message off the PULL socket."""

    def __init__(self, d: Daemon, args: SinkSettings, rules: Any) -> None:
        self.d, self.args, self.log = d, args, d.log
        self.errors = WriteErrors(d.counters, d.repeats)
        # what the events told, in ledger.db: a restart neither repeats an event nor reuses an id
        self.ledger = Ledger(Path(args.data_dir) / LEDGER_FILE if args.data_dir else None, self.errors)
        # each camera's one live record: events, status.db, motion and the recorder's pause share it
        self.cameras = LiveCameras()
        self.events = Events(rules=rules, counters=d.counters, ledger=self.ledger,
                             max_cameras=sys.maxsize,  # common.admission bounds the cameras, before Events
                             silent_after_s=args.silent_after, cameras=self.cameras)
        self.switches = Switches(self.ledger, self.events.ids)  # detect, record, snapshots: sink.switches
        data_dir = Path(args.data_dir) if args.data_dir else None
        upload = _upload(args)  # [upload]: common.upload
        if upload and not data_dir:
            self.log.error("[upload] is not used: the sink has no --data-dir")
            upload = None
        self.what = set(upload.what) if upload else set()
        self.sources = SourceFrames(d.counters)  # the source frames of frames resized for detection
        self.tracking = Tracking(self.events.ids, rules, d.counters, gone_s=args.gone_after,
                                 update_every_s=args.update_every,
                                 areas=areas_from_config(args.config),
                                 sightings="frames" in self.what)
        self.motion = MotionStates(self.events.ids, d.counters, self.ledger, self.cameras)
        self.recording = RecordingStates(self.ledger, d.counters, self.cameras)  # the recorder's pauses
        self.eventlog = EventLog(Path(args.events), self.errors, args.events_max_bytes, EVENTS_KEEP)
        self.book = StatusBook(data_dir / "status.db" if data_dir else None, self.errors, self.cameras, self.switches)
        self.snapshots = (SnapshotStore(data_dir / "snapshots", d.counters, self.errors, args.snapshot_retain,
                                        args.snapshot_max_bytes, args.min_free) if data_dir else None)
        self.outputs: list[Any] = []
        self.mqtt: MqttOutput | None = None
        if args.mqtt:
            cfg = getattr(args, "config", None)
            self.mqtt = MqttOutput(args.mqtt, d.counters, self.log, discovery=args.mqtt_discovery,
                                   cameras=list(cfg.cameras) if cfg else (), data_dir=data_dir,
                                   switches={c: self.switches.shown(c) for c in self.switches.cameras})
            self.outputs.append(self.mqtt)
        if args.webhook:
            self.outputs.append(WebhookOutput(args.webhook, d.counters, self.log, retries=args.webhook_retries))
        self.kafka = KafkaOutput(args.kafka, d.counters, self.log, dict(args.kafka_option or ())) if args.kafka else None
        if self.kafka is not None:
            self.outputs.append(self.kafka)
        self.pull = d.socket(zmq.PULL, bind=args.bind, linger=0)
        self.pub = d.socket(zmq.PUB, bind=args.publish) if args.publish else None
        self.boxes = d.socket(zmq.PUB, bind=args.publish_detections) if args.publish_detections else None
        self.until = set(name_list(args.exit_when_drained))
        # a camera silent this long has been told offline (silence_check) before it is forgotten
        idle_s = max(args.camera_idle, 2 * args.silent_after)
        self.admission = Admission(d.counters, self._configured(args.config), args.max_cameras,
                                   idle_s)
        self.uploader = Uploader(upload, data_dir, d.counters, self.log) if upload else None
        self.frames = (Frames(data_dir / "frames", d.counters, self.errors, args.min_free)
                       if "frames" in self.what else None)
        if self.frames is not None:  # objects that never ended (a sink killed): their frames go
            self.frames.sweep(self.uploader.pending_paths())
        # the console's review marks (sink.store.reviews): none kept without --data-dir
        self.reviews = Reviews(data_dir / REVIEWS_FILE if data_dir else None, self.errors)
        self.behind: dict[str, float] = {}  # camera -> its capture-to-result moving average, s
        self.started = time.monotonic()

    # -- messages in ------------------------------------------------------------------------------

    def handle(self, parts: list[Any]) -> None:
        if not 1 <= len(parts) <= 2:
            raise wire.MalformedMessage("bad_part_count", f"{len(parts)} parts")
        msg = wire.unpack(_buffer(parts[0]))
        wire.expect(msg, wire.Result, wire.Status, wire.Eos, wire.Motion, wire.Workers, wire.Event, wire.Switch,
                    wire.Reviewed)
        if len(parts) == 2 and not isinstance(msg, wire.Result):
            raise wire.MalformedMessage("bad_part_count", f"{type(msg).__name__} with 2 parts")
        if isinstance(msg, wire.Workers):
            self.book.on_workers(msg)
            return
        if isinstance(msg, wire.Reviewed):  # the console's: objects marked reviewed
            self.on_reviewed(msg)
            return
        if isinstance(msg, wire.Switch) and msg.camera not in self.admission:  # the console's, MQTT's
            raise wire.MalformedMessage("unknown_camera", f"a switch for {msg.camera!r}, a camera the sink does not know")
        if isinstance(msg, wire.Event):  # the recorder's: kept clips in object storage, recording paused/resumed
            if msg.type == "uploaded":
                self.emit(msg, None)
                return
            if msg.type not in RECORDING_TYPES:
                raise wire.MalformedMessage("unexpected_kind", f"Event of type {msg.type}")
        if not self.admission.admit(msg.camera, time.monotonic(), peer=parts[0]):
            self.d.repeats("cameras_refused", "message dropped: a new camera not in --config, and --max-cameras "
                           "others are known already", camera=msg.camera, max_cameras=self.args.max_cameras)
            return
        if isinstance(msg, wire.Event):  # a pause takes a camera's place like any message about it
            for event in self.recording.on_event(msg):
                self.emit(event, None)
            self.retell_record(msg.camera)  # the recorder reports in on the camera
        elif isinstance(msg, wire.Switch):
            self.on_switch(msg)
        elif isinstance(msg, wire.Result):
            self.on_result(msg, _buffer(parts[1]) if len(parts) == 2 else None)  # kept as it came: no copy
        elif isinstance(msg, wire.Status):
            for event in self.events.on_status(msg):
                self.emit(event, None)
            self.book.on_status(msg)
        elif isinstance(msg, wire.Motion):  # motion_start / motion_end (sink.motion_state)
            now = time.time()
            for event in self.motion.on_motion(msg):
                EVENT_LATENCY.labels(event.camera, event.type).observe(max(0.0, now - event.ts))
                self.emit(event, None)
        else:
            self.events.on_eos(msg)
            self.book.on_eos(msg)
            self.log.info("camera ended", camera=msg.camera, results=msg.results)
            self.finish_if_drained(msg.camera)

    def on_switch(self, msg: wire.Switch) -> None:
        """A camera's switch set (the console's, or MQTT's): kept, logged, told (sink.switches);
        detection off ends the camera's objects now."""
        event = self.switches.set(msg)
        if event is None:  # set so already
            self.d.counters.add("switches", msg.switch, "unchanged")
            return
        self.d.counters.add("switches", msg.switch, "changed")
        self.log.info("camera switch set", camera=msg.camera, switch=msg.switch, on=msg.on, by=msg.by)
        if msg.switch == "detect" and not msg.on:  # what it tracked ends first; afresh when it is on again
            self.emit_objects(self.tracking.forget(msg.camera))
        self.emit(event, None)

    def commands(self) -> None:
        """Every COMMANDS_EVERY_S: the switches set on MQTT's command topics (queued by paho's
        thread), through the same path as the console's."""
        for msg in self.mqtt.take_commands() if self.mqtt is not None else ():
            try:
                self.handle([wire.pack(msg)])
            except wire.MalformedMessage as exc:  # a camera the sink does not know
                self.d.malformed(exc, by=msg.by)

    def retell_record(self, camera: str) -> None:
        """The recorder reported in on ``camera``: the event that set its ``record`` switch goes
        out again on PUB alone (the same event; a recorder applies it once), so a recorder that
        was down when it was set learns it."""
        if self.pub is not None:
            self.pub.send(wire.pack(self.switches.told(camera, "record")))

    def retell_records(self) -> None:
        """Every RETELL_EVERY_S: each known camera's ``record`` switch on PUB again (sink.switches)."""
        for camera in sorted(self.admission.names()):
            self.retell_record(camera)

    def on_reviewed(self, msg: wire.Reviewed) -> None:
        """Objects marked reviewed in the console: kept in the store (sink.store.reviews), logged
        with who marked them; counted ``reviews/kept``, ``reviews/unkept`` (no --data-dir, or the
        disk refused: then also ``write_errors/reviews``)."""
        kept = self.reviews.mark(msg)
        self.d.counters.add("reviews", "kept" if kept else "unkept")
        if not self.reviews.keeping:
            self.d.repeats("reviews:unkept", "review marks are not kept: the sink has no --data-dir",
                           by=msg.by, objects=len(msg.object_ids))
        self.log.info("objects marked reviewed" if msg.reviewed else "review marks taken back", by=msg.by,
                      user=msg.user, objects=len(msg.object_ids), first=msg.object_ids[0], kept=kept)

    def on_result(self, r: wire.Result, part: Any = None) -> None:
        """A result and its part 1, if it has one (the frame's pixels)."""
        now = time.time()
        self.arrived(r.camera, max(0.0, now - r.ts_ns / 1e9))
        if r.error:
            self.d.repeats(f"result_error:{r.camera}", "results carry an error", camera=r.camera, worker=r.worker,
                           error=r.error)
        pixels = self.pixels_of(r, part)
        for event in self.events.on_result(r):
            EVENT_LATENCY.labels(event.camera, event.type).observe(max(0.0, now - event.ts))
            self.emit(event, pixels if event.seq is not None else None, (r.width, r.height))
        detect = self.switches.on(r.camera, "detect")  # off: no objects, no boxes (sink.switches)
        if detect:  # without its pixels where snapshots are off: no snapshot, no object's frames
            pictures = pixels if self.switches.on(r.camera, "snapshots") else None
            self.emit_objects(self.tracking.on_result(r, pictures, time.monotonic()))
        if self.boxes is not None:
            shown = self.tracking.shown(r) if detect else msgspec.structs.replace(r, detections=[])
            if shown.image is not None or shown.source_shm is not None:  # its pixels do not go with it
                shown = msgspec.structs.replace(shown, image=None, image_enc="lz4", image_shm=None, image_pix="bgr",
                                                source_shm=None)
            self.boxes.send(wire.pack(shown))
        self.book.on_result(r)
        self.finish_if_drained(r.camera)

    def arrived(self, camera: str, age_s: float) -> None:
        """A result ``age_s`` after its capture: the latency histogram and the camera's moving average."""
        RESULT_LATENCY.labels(camera).observe(age_s)
        mean = self.behind.get(camera)
        mean = age_s if mean is None else mean + CAPTURE_EMA_ALPHA * (age_s - mean)
        self.behind[camera] = mean
        CAPTURE_TO_RESULT.labels(camera).set(mean)

    def pixels_of(self, r: wire.Result, part: Any) -> Pixels | None:
        """The pixels a result brought, checked without decompressing them (that happens only for
        the few a JPEG is made of); a part that cannot be them is counted malformed, and the
        result goes on without."""
        if part is None and r.image is None and r.image_shm is None:
            return None
        enc = r.image_enc
        if enc == "shm" or r.image_shm is not None:  # still in the frame's slot, held for us
            if enc != "shm" or r.image_shm is None or part is not None or r.image is None:
                self.sources.release(r.image_shm)  # a slot named is freed, whatever else is wrong
                part = None  # Pixels.of says why (the image without its part), counted malformed
            else:  # copied out, and the slot freed, now
                part, why = self.sources.copy_out(r.image_shm, r.image, r.image_pix)
                if part is None:
                    self.d.repeats(f"result_pixels:{why}", SHM_UNREAD.get(why, SHM_UNREAD["bad"]), camera=r.camera,
                                   worker=r.worker, why=why)
                    return None
            enc = "raw"
        try:
            pixels = Pixels.of(r.image, part, enc=enc, pix=r.image_pix, matrix=r.matrix)
        except wire.MalformedMessage as exc:
            self.d.counters.add("malformed", exc.reason)
            self.d.repeats(f"malformed:{exc.reason}", "a result's pixels refused; it goes on without them",
                           reason=exc.reason, detail=str(exc)[:300], camera=r.camera, worker=r.worker)
            return None
        self.d.counters.add("snapshot_pixels", "received")
        return self.sources.attach(pixels, r)

    def finish_if_drained(self, camera: str) -> None:
        """An ended camera whose results are all in: its held results go on, its objects end."""
        if self.events.drained(camera):
            self.emit_objects(self.tracking.finish(camera))

    def emit_objects(self, out: list[tuple[wire.Event, Snapshot | None]]) -> None:
        """What a call into the tracker made; the frames it saw objects in go first (an end hands
        its object's frames over)."""
        if self.frames is not None:
            self.frames.observe(*self.tracking.take_sightings())
        now = time.time()
        saved: dict[str | None, str | None] = {}  # object_id -> its snapshot written in this batch
        for event, snap in out:
            EVENT_LATENCY.labels(event.camera, event.type).observe(max(0.0, now - event.ts))
            if snap is None:
                if event.object_id in saved:  # made before its snapshot was written (a start and end at once)
                    event = msgspec.structs.replace(event, snapshot=saved[event.object_id])
                self.emit(event, None)
            else:
                event = self.emit(event, snap.pixels, snap.size, snap)
                self.tracking.saved(event.camera, event.object_id, event.snapshot)
                if event.snapshot is not None and event.object_id is not None:  # not a suggested mask
                    saved[event.object_id] = event.snapshot

    # -- events out -------------------------------------------------------------------------------

    def emit(self, event: wire.Event, pixels: Pixels | None, size: tuple[int, int] = (0, 0),
             drawn: Snapshot | None = None) -> wire.Event:
        """Snapshot, JSON line, PUB, MQTT, webhook: a failure in one never holds back the others.
        ``pixels``: the frame's, made a JPEG snapshot here (``size``: the frame's, the source's);
        ``drawn``: an object's best frame, saved with its box drawn. Returns the event as sent."""
        self.ledger.commit()  # the state that made it, and its id, on disk before the event is anywhere
        if pixels is not None and self.snapshots is not None and self.switches.on(event.camera, "snapshots"):
            path = self.snapshots.save(event, pixels, size, drawn.box if drawn else None,
                                       drawn.label if drawn else None)
            if path is not None:
                event = msgspec.structs.replace(event, snapshot=path)
        body = _json.encode(event)
        self.eventlog.write(body + b"\n")
        if self.uploader is not None:
            self.upload(event, body, pixels is not None)
        if self.pub is not None:
            self.pub.send(wire.pack(event))
        for output in self.outputs:
            output.send(event, body)
        self.log.info("event", type=event.type, camera=event.camera, seq=event.seq, id=event.id,
                      detections=len(event.detections), snapshot=event.snapshot, reason=event.reason,
                      phase=event.phase, object_id=event.object_id, label=event.label)
        return event

    def upload(self, event: wire.Event, body: bytes, fresh: bool) -> None:
        """Queue what ``[upload] what`` asks of ``event``: its snapshot if written just now
        (``fresh``), an ended object's frames. ``uploaded`` events themselves never are."""
        if "snapshots" in self.what and fresh and event.snapshot is not None:
            self.uploader.enqueue(event, body, snapshot_parts(Path(self.args.data_dir), event))
        if self.frames is not None and event.type == "object" and event.phase == "end":
            parts = self.frames.end(event.object_id)
            if parts and not self.uploader.enqueue(event, body, parts, tag="frames"):
                self.frames.discard(parts)

    # -- timers -----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Every FLUSH_S: cameras gone silent, idle ones forgotten, then status.db; source rings
        not read lately unmapped."""
        self.sources.sweep()
        for event in self.events.silence_check():
            self.emit(event, None)
        if gone := self.admission.expire(time.monotonic()):  # one line, however many a flood left behind
            for camera in gone:
                self.forget(camera)
            self.log.info("idle cameras forgotten", count=len(gone), cameras=gone[:10], idle_s=self.admission.idle_s)
        self.book.on_refused("sink", wire.refusals(self.d.counters.get_tree("handshakes_failed"),
                                                   self.d.counters.get_tree("refused_peers")))
        self.book.flush(force=True)

    def release(self) -> None:
        """Every RELEASE_EVERY_S: results held past the reorder bound, objects of quiet cameras."""
        self.emit_objects(self.tracking.tick(time.monotonic()))

    def prune(self) -> None:
        self.ledger.prune()
        if self.snapshots is not None:
            self.snapshots.prune()

    def _configured(self, cfg: Config | None) -> set[str]:
        """The cameras that always have a place: the file's, and those the sink waits to drain."""
        return {*(cfg.cameras if cfg is not None else ()), *self.until}

    def forget(self, camera: str) -> None:
        """A camera that lost its place (idle, or taken out of the file with the pool full): its
        objects end, and nothing the sink holds in memory for it stays (what the events told
        stays in the ledger, so a camera heard of again tells no change twice)."""
        self.emit_objects(self.tracking.forget(camera))
        self.book.forget(camera)  # its row leaves status.db
        self.cameras.pop(camera, None)
        for output in self.outputs:
            if isinstance(output, MqttOutput):
                output.forget(camera)
        RESULT_LATENCY.remove_by_labels({"camera": camera})
        EVENT_LATENCY.remove_by_labels({"camera": camera})
        CAPTURE_TO_RESULT.remove_by_labels({"camera": camera})
        self.behind.pop(camera, None)
        self.d.counters.fold("camera", camera)

    def reload(self, cfg: Config | None) -> None:
        """SIGHUP or a changed --config: reopen --events (logrotate), take the cameras, rules,
        masks and zones again."""
        self.eventlog.reopen()
        if cfg is not None:
            self.tracking.areas = areas_from_config(cfg)
            for camera in self.admission.set_configured(self._configured(cfg), time.monotonic()):
                self.forget(camera)
        if self.args.rules:
            try:
                self.events.rules = self.tracking.rules = load_rules(self.args.rules)
            except ValueError as exc:
                self.log.error("rules refused; the running rules stay", reason=str(exc))
                return
            self.log.info("rules reloaded", file=self.args.rules)
        elif cfg is not None:
            self.events.rules = self.tracking.rules = cfg.rules
            self.log.info("rules reloaded", file=str(cfg.path), cameras=sorted(cfg.rules.cameras or {}))

    def uploaded(self) -> None:
        """Every UPLOADED_EVERY_S: events whose media and manifest are in object storage go out as ``uploaded``."""
        for event in self.uploader.take() if self.uploader is not None else ():
            self.emit(event, None)
            self.uploader.announced(event)

    def drained(self) -> bool:
        if self.until and all(self.events.drained(c) for c in self.until):
            self.log.info("all cameras drained", cameras=sorted(self.until))
            return True
        return False

    def close(self) -> None:
        """Results already queued here were accepted: they become events too. Then close the files."""
        try:
            for _ in range(CLOSE_DRAIN_ROUNDS):  # bounded: senders that go on sending cannot hold the exit
                if not self.pull.poll(0):
                    break
                self.d.drain(self.pull)
            for camera in sorted({name for name, _detector in self.tracking.cameras}):  # objects end with the sink
                self.emit_objects(self.tracking.finish(camera))
        finally:
            if self.uploader is not None:  # what is not up yet stays in uploads.db for the next start
                self.uploaded()
                self.uploader.close()
            for output in self.outputs:
                output.close()
            self.book.close()
            self.ledger.close()
            self.eventlog.close()
            self.reviews.close()
            self.sources.close()

    # -- what the metrics and --stats say ---------------------------------------------------------

    def gauges(self) -> dict:
        snap = self.snapshots
        return {"cameras": ("cameras the sink knows", (), {(): len(self.cameras)}),
                "snapshot_bytes": ("bytes of snapshots kept", (), {(): snap.bytes if snap else 0}),
                "frames": ("each camera's frames: decoded, sent, the extractor's drops by why and the pool's final "
                           "buckets, as last reported (common.frame_account)", ("camera", "bucket"),
                           self.book.frames())}

    def stats_extra(self) -> dict[str, Any]:
        return {"uptime_s": round(time.monotonic() - self.started, 3),
                "cameras": {name: {"online": c.online, "covered": live.covered, "results": c.results,
                                   "state": live.state if live.part(StatusPart) is not None else None}
                            for name, live in self.cameras.items() if (c := live.part(EventsPart)) is not None},
                "switched_off": self.switches.off()}


class CameraUp:
    """``camwire_camera_up{camera}``: 1 while a camera is online (covered or not), else 0."""

    def __init__(self, book: StatusBook) -> None:
        self.book = book

    def collect(self):
        family = GaugeMetricFamily("camwire_camera_up", "1 while the camera is online, as the sink sees it",
                                   labels=["camera"])
        for camera, up in sorted(self.book.up().items()):
            family.add_metric([camera], up)
        yield family


def _buffer(frame: Any) -> Any:
    return frame.buffer if isinstance(frame, zmq.Frame) else frame


def main(args: SinkSettings) -> int:
    rules = load_rules(args.rules) if args.rules else args.config.rules if args.config else None
    d = Daemon("sink", args, LABELS)
    sink = Sink(d, args, rules)
    d.on(sink.pull, sink.handle)
    d.every(FLUSH_S, sink.tick)
    d.every(RELEASE_EVERY_S, sink.release)
    d.every(PRUNE_EVERY_S, sink.prune, now=True)
    if sink.uploader is not None:
        d.every(UPLOADED_EVERY_S, sink.uploaded)
    if sink.kafka is not None:
        d.every(KAFKA_POLL_S, sink.kafka.poll)  # delivery reports are served on this thread
    if sink.mqtt is not None:
        d.every(COMMANDS_EVERY_S, sink.commands)  # switches set on MQTT
    d.every(RETELL_EVERY_S, sink.retell_records)
    d.on_reload(sink.reload)
    d.gauges(sink.gauges)
    d.stats_extra(sink.stats_extra)
    d.collector(CameraUp(sink.book))  # camwire_camera_up: not one of camwire_sink_*
    d.serves(served.ops(Path(args.events), Path(args.data_dir) if args.data_dir else None, EVENTS_KEEP))
    d.hello_extra["events"] = str(Path(args.events).resolve())  # a console on this host reads it directly
    d.log.info("sink started", bind=args.bind, events=args.events, publish=args.publish, mqtt=args.mqtt,
               webhook=origin(args.webhook) if args.webhook else None, data_dir=args.data_dir)
    code = d.run(until=sink.drained, cleanup=sink.close)
    d.log.info("sink stopped", stats=d.stats())
    return code
