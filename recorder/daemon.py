"""``camwire recorder``: every camera recorded into a ring of fixed-duration files, clips kept
around events.

Sockets, owned by the main thread (common.daemon's loop):
  - SUB, connected to every ``--subscribe`` address (extractors' ``--publish``): ``frame``
    messages, ``[FrameHeader, payload]`` with pixels (``lz4``/``raw``/``jpeg``, encoded here with
    libx264) or passed-through ``h264``/``hevc`` packets (remuxed, never decoded), plus each
    camera's ``Status`` and ``Eos`` (one part each);
  - SUB, connected to ``--events`` (the sink's ``--publish``): ``Event`` messages; each one of
    the ``--keep-types`` keeps the segments around it (see recorder.keep), and a ``camera_switch``
    for ``record`` stops or resumes recording its camera (recorder.record_switch, kept in index.db);
  - PUSH, connected to ``--sink`` (the sink's ``--bind``, [sockets] results; one per sink when
    repeated, each camera's events to the sink that owns it: common.sinks), when given: one
    ``Event`` of type ``recording_paused`` / ``recording_resumed`` per camera when recording pauses
    for space and resumes (recorder.pause), and with ``[upload] what = ["clips"]`` one of type
    ``uploaded`` per kept clip in object storage; one part each, which the sink emits as its own.
Anything else, or anything that does not decode, is counted under ``malformed/<reason>`` and
dropped. Files: ``DIR/<camera>/<UTC start>.mkv``, indexed in ``DIR/index.db`` (recorder.index).

Bounded on a fresh install: the ring by age (``--retain``, 7 days) and size (``--max-bytes``), kept
clips by their own age (``--keep-retain``, 30 days) and size (``--keep-max-bytes``), the cameras
recorded (``--max-cameras``), and the ring by the volume's free share (``--min-free``, 5 %): the
oldest ring files go first; kept clips never go for it. When the ring's own files cannot meet the
floor, recording pauses until space returns and says so (recorder.pause). In memory: a frame
over ``--max-frame-bytes`` is refused from its header, files are cut by ``--segment`` and
``--max-segment-bytes``, and the encoders of pixel frames stay within ``--encode-memory``, all
cameras together (recorder.ring).

With ``[upload] what = ["clips"]`` in ``--config`` (common.upload), each kept clip, once
complete and final (an object's after its end), goes to object storage as one MP4 remuxed from
its segments (``kept/.../clip.mp4``, inside the clip's budget, deleted once up) with its
event.json and a manifest, from ``DIR/uploads.db`` (recorder.uploads); a recorder asked for
clips without ``--sink`` is refused at start. Counted under ``uploads/<outcome>``.

A subscribed address that never answers (a wrong ``--subscribe`` or ``--events``) is warned about
by name (common.sockets.PeerWatch). SIGHUP, or a changed ``--config`` file, applies the file's new
[recorder] settings at once (flags given on the command line still win): ``--retain``,
``--max-bytes``, ``--min-free``, ``--keep-retain``, ``--keep-max-bytes``, ``--pre``/``--post``,
``--keep-types``, ``--max-cameras``, ``--max-clock-skew``, ``--preset``/``--crf`` (new files),
``--max-segment-bytes``, ``--encode-memory``.
A changed ``--dir``, address or ``--segment`` is logged as needing a restart.
"""

from __future__ import annotations

import time
from pathlib import Path

import zmq

from camwire.common import wire
from camwire.common.settings import RecorderSettings, RunSettings
from camwire.common.sinks import Sinks
from camwire.common.config import Config
from camwire.common.daemon import Daemon
from camwire.common.paths import name_list
from camwire.common.curve import SERVER_OF
from camwire.common.sockets import check_addresses
from camwire.common.upload import Uploader
from camwire.common.wire import recorder_topics
from camwire.recorder import served
from camwire.recorder.index import Index
from camwire.recorder.keep import Keeper
from camwire.recorder.pause import Pause
from camwire.recorder.record_switch import RecordSwitch
from camwire.recorder.retention import Limits, Retention
from camwire.recorder.ring import Encoding, Ring
from camwire.recorder.uploads import ClipUploads

SUB_HWM = 1000  # frames waiting in the recorder; beyond this the publisher drops (and we see the hole)
RETENTION_EVERY_S = 5.0
PEER_CHECK_S = 1.0  # how often the SUB sockets' peers are looked for (common.sockets.PeerWatch)
UPLOADED_EVERY_S = 0.2  # uploaded (and pause) events are sent to the sink this often
PUSH_HWM = 1000  # events queued towards the sink; past this they wait in the recorder
# what a reload applies to the running recorder; a change to any other setting needs a restart
LIVE = ("retain", "max_bytes", "min_free", "keep_retain", "keep_max_bytes", "pre", "post", "keep_types",
        "max_cameras", "max_clock_skew", "preset", "crf", "max_segment_bytes", "encode_memory")

METRIC_LABELS = {"written": ("camera",), "segments": ("camera",), "gaps": ("camera",), "restarts": ("camera",),
                 "dropped": ("camera", "reason"), "deleted": ("reason",), "events_kept": ("type",),
                 "keeps_refused": ("reason",), "clock_skew": ("camera",), "recover_failed": ("error",),
                 "uploads": ("outcome",), "notices": ("type", "outcome")}


def check(args: RecorderSettings) -> None:
    """The options judged without touching the disk or a socket (camwire check-config, a reload)."""
    check_addresses(args, "subscribe", "events", "sink")
    if clips_upload(args) is not None and not getattr(args, "sink", None):
        raise ValueError("--sink: [upload] what = [\"clips\"] needs the sink's results address ([sockets] results "
                         "or the recorder's --sink), where the uploaded events go")
    unknown = [t for t in name_list(args.keep_types) if t not in wire.EVENT_TYPES]
    if unknown:
        raise ValueError(f"--keep-types: no event is of type {', '.join(unknown)}; "
                         f"the types: {', '.join(wire.EVENT_TYPES)}")
    if args.segment < 1:
        raise ValueError(f"--segment: at least 1s, not {args.segment}s")


def clips_upload(args: RecorderSettings | RunSettings):
    """The file's [upload] when it asks for kept clips (common.upload.UploadConfig), else None."""
    cfg = getattr(args, "config", None)
    upload = cfg.parts.get("upload") if cfg is not None else None
    return upload if upload is not None and "clips" in upload.what else None


def main(args: RecorderSettings) -> int:
    d = Daemon("recorder", args, METRIC_LABELS)
    rec = Recorder(d, args)
    d.on(rec.frames, rec.on_frames)
    if rec.events is not None:
        d.on(rec.events, rec.on_event)
    if rec.sinks is not None:
        d.every(UPLOADED_EVERY_S, rec.tell)
    d.every(PEER_CHECK_S, rec.check_peers)
    d.every(RETENTION_EVERY_S, rec.housekeeping, now=True)
    d.on_reload(rec.reload)
    d.reloadable = set(LIVE)  # the skeleton names any other changed setting as needing a restart
    d.stats_extra(rec.stats_extra)
    d.gauges(rec.gauges)
    d.serves(served.ops(rec.root))
    d.hello_extra["dir"] = str(rec.root.resolve())  # a console on this host reads it directly, not twice
    d.log.info("recorder started", subscribe=args.subscribe, dir=str(rec.root), events=args.events, sink=args.sink,
               upload="clips" if rec.clips is not None else None,
               segment_s=args.segment, retain_s=args.retain, max_bytes=args.max_bytes, min_free=args.min_free,
               keep_retain_s=args.keep_retain, keep_max_bytes=args.keep_max_bytes, max_cameras=args.max_cameras,
               max_frame_bytes=args.max_frame_bytes, max_segment_bytes=args.max_segment_bytes,
               encode_memory=args.encode_memory)
    code = d.run(until=rec.ended, cleanup=rec.close)
    d.log.info("recorder stopped", stats=d.stats())
    return code


class Recorder:
    """The recorder's state: the ring and what keeps and bounds it (index, keeper, retention,
    pause, the kept clips' uploads), its sockets, and the settings it runs with; its methods are
    the SUBs' handlers, the timers, the reload and the close."""

    def __init__(self, d: Daemon, args: RecorderSettings) -> None:
        self.d, self.args = d, args
        self.running = args  # the settings applied now: a reload takes the file's new ones
        root = self.root = Path(args.dir)
        self.index = Index(root)  # on a full disk it opens later (Index.prepare): the recorder starts anyway
        self.keeper = Keeper(root, self.index, args.pre, args.post, tuple(name_list(args.keep_types)), d.counters,
                             d.log, d.repeats, args.max_clock_skew, args.keep_retain, args.keep_max_bytes)
        self.retention = Retention(root, self.index, Limits(args.retain, args.max_bytes, args.min_free), d.counters,
                                   d.log, d.repeats)
        self.pause = Pause(d.counters, d.log, notify=bool(args.sink))  # told to the sink, with --sink
        self.ring = Ring(root, self.index, self.keeper, self.retention, args.segment,
                         Encoding(preset=args.preset, crf=args.crf), d.counters, d.log, d.repeats, args.max_cameras,
                         args.max_clock_skew, args.max_frame_bytes, args.max_segment_bytes, args.encode_memory,
                         self.pause)
        self.clips: ClipUploads | None = None
        if (upload := clips_upload(args)) is not None:  # before the ring: every clip completed from now on goes
            self.clips = ClipUploads(Uploader(upload, root, d.counters, d.log), root, self.index, d.counters, d.log,
                                     d.repeats)
            self.keeper.completed = self.clips.completed
        self.switch = RecordSwitch(self.index)  # cameras switched off from the console or MQTT
        self.ring.off = self.switch.off
        self.ring.tick()  # recovers what a killed recorder left open
        if self.clips is not None:
            self.clips.resume(time.time_ns())  # final clips completed but never queued (killed mid-remux)
        # each SUB is connected by its PeerWatch, which names an address that never answers
        self.frames = d.socket(zmq.SUB, rcvhwm=SUB_HWM, linger=0)
        self.subscribed: set[bytes] = set()
        self.subscribe(d.config)
        self.peers = [d.peer_watch(self.frames, args.subscribe, SERVER_OF["subscribe"])]
        self.events: zmq.Socket | None = None
        self.sinks: Sinks | None = None  # each camera's events to the sink that owns it (common.sinks)
        if args.events:
            self.events = d.socket(zmq.SUB, linger=0)
            self.events.setsockopt(zmq.SUBSCRIBE, b"")
            self.peers.append(d.peer_watch(self.events, args.events, SERVER_OF["events"]))
        if args.sink:
            self.sinks = Sinks(d, args.sink, sndhwm=PUSH_HWM, linger=1000)
            self.peers += self.sinks.peers
        self.until = set(name_list(args.exit_when_ended))

    def subscribe(self, cfg: Config | None) -> None:
        """What the recorder takes of the extractors' streams: everything (without --config), or
        the frames, status and end of each camera the file records (an extractor publishes every
        camera, for live views too; see recorded_topics), and the marker of each camera it records
        (extractor.subscribers): what an extractor's --publish-wait waits for, not a viewer."""
        recorded = None if cfg is None or not cfg.cameras else [c.name for c in cfg.cameras.values() if c.record]
        want = recorded_topics(cfg) | recorder_topics(recorded)
        for topic in want - self.subscribed:
            self.frames.setsockopt(zmq.SUBSCRIBE, topic)
        for topic in self.subscribed - want:
            self.frames.setsockopt(zmq.UNSUBSCRIBE, topic)
        self.subscribed = want

    # -- messages in ------------------------------------------------------------------------------

    def on_frames(self, parts: list[zmq.Frame]) -> None:
        """One message of the frames SUB: a frame, or a camera's Status or Eos."""
        buffers = [p.buffer for p in parts]
        msg = wire.unpack(buffers[0])
        if isinstance(msg, wire.FrameHeader):
            self.ring.on_frame(buffers)
        elif isinstance(msg, (wire.Status, wire.Eos)):
            if len(buffers) != 1:
                raise wire.MalformedMessage("bad_part_count", f"{len(buffers)} parts")
            self.ring.on_control(msg)
        else:
            wire.expect(msg, wire.FrameHeader, wire.Status, wire.Eos)

    def on_event(self, parts: list[zmq.Frame]) -> None:
        """One message of the events SUB: an Event."""
        event = wire.single([p.buffer for p in parts], wire.Event)
        on = self.switch.on_event(event)
        if on is not None:
            self.d.log.info("recording switched on" if on else "recording switched off", camera=event.camera,
                            reason=event.reason)
            cam = self.ring.cameras.get(event.camera)
            if not on and cam is not None:
                self.ring.close_segment(cam)  # what was recorded is complete on disk
        self.ring.on_event(event)

    # -- timers -----------------------------------------------------------------------------------

    def tell(self) -> None:
        """Every UPLOADED_EVERY_S: pauses, resumptions and uploaded clips to the sink (--sink)."""
        if self.sinks is not None:
            self.pause.send(self.sinks)
            if self.clips is not None:
                self.clips.tell(self.sinks)

    def check_peers(self) -> None:
        for p in self.peers:
            p.check()

    def housekeeping(self) -> None:
        """Every RETENTION_EVERY_S: idle files closed, the ring's limits, clips' MP4s retried."""
        self.ring.close_idle(max(2 * self.ring.segment_s, 10.0))
        self.ring.tick()
        self.switch.flush()  # record switches a full disk held back
        self.ring.enforce_retention()
        if self.clips is not None:
            self.clips.retry(time.time_ns())  # MP4s that could not be written (a full disk)

    # -- reload, the end, what --stats and the metrics say ----------------------------------------

    def reload(self, cfg: Config | None) -> None:
        """The file's new [recorder] settings, applied now (ConfigError: the reload is refused)."""
        if cfg is None:
            self.d.log.info("nothing to reload: the recorder was started without --config")
            return
        self.subscribe(cfg)  # cameras recorded or not any more
        new = cfg.reloaded(self.args)  # the file was judged already, as the recorder's start was
        changed = {name: getattr(new, name) for name in LIVE if getattr(new, name) != getattr(self.running, name)}
        self.apply(new)
        self.running = new
        self.d.log.info("recorder settings reloaded", changed=changed)
        self.ring.enforce_retention()  # new limits at once, not at the next round

    def apply(self, settings: RecorderSettings) -> None:
        """The ``LIVE`` settings into the running recorder (a reload)."""
        self.keeper.configure(settings.pre, settings.post, tuple(name_list(settings.keep_types)),
                              settings.max_clock_skew, settings.keep_retain, settings.keep_max_bytes)
        self.retention.limits = Limits(settings.retain, settings.max_bytes, settings.min_free)
        self.ring.max_cameras, self.ring.max_skew_ns = settings.max_cameras, int(settings.max_clock_skew * 1e9)
        self.ring.encoding = Encoding(preset=settings.preset, crf=settings.crf)  # files started from now on
        self.ring.max_segment_bytes, self.ring.encode_memory = settings.max_segment_bytes, settings.encode_memory

    def ended(self) -> bool:
        """With --exit-when-ended: every camera named has ended and its last segment is closed."""
        if self.until and self.until <= self.ring.ended:
            self.d.log.info("all cameras ended", cameras=sorted(self.until))
            return True
        return False

    def close(self) -> None:
        try:
            # of the clips completed now, the MP4 under way is finished; the rest go at the next start
            self.ring.close_all()
        finally:
            if self.sinks is not None:
                self.pause.send(self.sinks)  # what the PUSHes take now goes within their linger
                if self.clips is not None:
                    self.clips.tell(self.sinks)
            if self.clips is not None:
                self.clips.close()
            self.index.close()
            for p in self.peers:
                p.close()

    def stats_extra(self) -> dict:
        return {"cameras": sorted(self.ring.cameras), "paused": self.pause.paused,
                "switched_off": sorted(self.switch.off)}

    def gauges(self) -> dict:
        return {"paused": ("1 while recording is paused for space (the free-space floor cannot be met with the "
                           "ring's own files), else 0", (), {(): float(self.pause.paused)})}


def recorded_topics(cfg: Config | None) -> set[bytes]:
    """The SUB topics of what to record: everything published, without a file (or one that names
    no cameras); else each ``record = true`` camera's frames, status and end (common.wire.camera_topic)."""
    if cfg is None or not cfg.cameras:
        return {b""}
    return {wire.camera_topic(kind, c.name) for c in cfg.cameras.values() if c.record
            for kind in (wire.FrameHeader, wire.Status, wire.Eos)}
