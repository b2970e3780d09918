"""``camwire recorder``: every camera recorded into a ring of fixed-duration files, clips kept
around events.

Sockets, owned by the main thread (common.daemon's loop):
  - SUB, connected to every ``--subscribe`` address (extractors' ``--publish``): ``frame``
    messages, ``[FrameHeader, payload]`` with pixels (``lz4``/``raw``/``jpeg``, encoded here with
    libx264) or passed-through ``h264``/``hevc`` packets (remuxed, never decoded), plus each
    camera's ``Status`` and ``Eos`` (one part each);
  - SUB, connected to ``--events`` (the sink's ``--publish``): ``Event`` messages; each one of
    the ``--keep-types`` keeps the segments around it (see recorder.keep);
  - PUSH, connected to ``--sink`` (the sink's ``--bind``, [sockets] results), when given: one
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

import argparse
import time
from pathlib import Path

import zmq

from camwire.cli import args_from_config
from camwire.common import units, wire
from camwire.common.config import Config
from camwire.common.daemon import Daemon
from camwire.common.paths import name_list
from camwire.common.curve import SERVER_OF
from camwire.common.sockets import check_addresses
from camwire.common.upload import Uploader
from camwire.common.wire import recorder_topics
from camwire.recorder.index import Index
from camwire.recorder.keep import DEFAULT_KEEP_TYPES, Keeper
from camwire.recorder.pause import Pause
from camwire.recorder.retention import (DEFAULT_KEEP_RETAIN_S, DEFAULT_MAX_SKEW_S, DEFAULT_MIN_FREE, DEFAULT_RETAIN_S,
                                Limits, Retention)
from camwire.recorder.ring import DEFAULT_ENCODE_MEMORY, DEFAULT_MAX_CAMERAS, DEFAULT_MAX_SEGMENT_BYTES, Encoding, Ring
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subscribe", action="append", required=True, metavar="ADDR",
                   help="an extractor's --publish address; repeat for more")
    p.add_argument("--dir", required=True, metavar="DIR", help="where the ring, its index and kept clips live")
    add_recording_arguments(p)
    p.add_argument("--events", metavar="ADDR", help="the sink's --publish address: keep the files around events")
    p.add_argument("--sink", metavar="ADDR",
                   help="the sink's --bind address ([sockets] results): where recording_paused/recording_resumed "
                        "events go, and with [upload] what = [\"clips\"] the uploaded events of kept clips")
    p.add_argument("--exit-when-ended", metavar="CAMERAS",
                   help="comma-separated cameras: exit once each has ended (files) and its last segment is closed")
    p.add_argument("--stats", metavar="PATH", help="write counters as JSON here at exit")


def add_recording_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``camwire run --record`` shares with ``camwire recorder``."""
    duration, size = units.positive(units.duration), units.positive(units.size)
    p.add_argument("--segment", type=duration, default=60.0, metavar="DURATION", help="video per file (60s)")
    p.add_argument("--retain", type=duration, default=DEFAULT_RETAIN_S, metavar="DURATION",
                   help="delete ring files older than this (default 7d)")
    p.add_argument("--max-bytes", type=size, metavar="SIZE", help="keep the ring under this size (500M, 200G)")
    p.add_argument("--min-free", type=units.percent, default=DEFAULT_MIN_FREE, metavar="PERCENT",
                   help="keep this share of the volume free, deleting the oldest ring files (never kept clips); "
                   "when they are not enough, recording pauses until space returns (default 5%%)")
    p.add_argument("--keep-retain", type=duration, default=DEFAULT_KEEP_RETAIN_S, metavar="DURATION",
                   help="delete kept clips older than this (default 30d)")
    p.add_argument("--keep-max-bytes", type=size, metavar="SIZE", help="keep all kept clips under this size")
    p.add_argument("--max-cameras", type=units.positive(int), default=DEFAULT_MAX_CAMERAS, metavar="N",
                   help="record at most this many cameras; frames of more are counted, not recorded")
    p.add_argument("--max-clock-skew", type=duration, default=DEFAULT_MAX_SKEW_S, metavar="DURATION",
                   help="a capture time further than this from the wall clock is counted and replaced by it")
    p.add_argument("--pre", type=units.duration, default=10.0, metavar="DURATION",
                   help="keep this much before an event")
    p.add_argument("--post", type=units.duration, default=10.0, metavar="DURATION",
                   help="keep this much after an event")
    p.add_argument("--keep-types", default=",".join(DEFAULT_KEEP_TYPES), metavar="TYPES",
                   help="comma-separated event types that keep a clip (default: object,camera_covered; an object keeps one clip)")
    p.add_argument("--max-segment-bytes", type=size, default=DEFAULT_MAX_SEGMENT_BYTES, metavar="SIZE",
                   help="cut a file at this size even before --segment has passed (default 1G)")
    p.add_argument("--max-frame-bytes", type=size, default=wire.DEFAULT_MAX_FRAME_BYTES, metavar="SIZE",
                   help="refuse a frame whose pixels or payload are larger, before decompressing it (default: 8K RGBA)")
    p.add_argument("--encode-memory", type=size, default=DEFAULT_ENCODE_MEMORY, metavar="SIZE",
                   help="about how much memory the encoders of LZ4/raw/JPEG cameras may hold at once, all together; "
                        "a camera past it is counted, not recorded (default 1.5G)")
    p.add_argument("--preset", default="veryfast", help="x264 preset for frames that must be encoded")
    p.add_argument("--crf", type=int, default=23, help="x264 quality for frames that must be encoded")


def recording_argv(args: argparse.Namespace) -> list[str]:
    """The recording options of ``args`` as command-line words (what ``camwire run`` passes on)."""
    argv = ["--segment", str(args.segment), "--pre", str(args.pre), "--post", str(args.post),
            "--keep-types", args.keep_types, "--preset", args.preset, "--crf", str(args.crf),
            "--retain", str(args.retain), "--min-free", str(args.min_free), "--keep-retain", str(args.keep_retain),
            "--max-cameras", str(args.max_cameras), "--max-clock-skew", str(args.max_clock_skew),
            "--max-segment-bytes", str(args.max_segment_bytes), "--max-frame-bytes", str(args.max_frame_bytes),
            "--encode-memory", str(args.encode_memory)]
    for flag, value in (("--max-bytes", args.max_bytes), ("--keep-max-bytes", args.keep_max_bytes)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def check(args: argparse.Namespace) -> None:
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


def clips_upload(args: argparse.Namespace):
    """The file's [upload] when it asks for kept clips (common.upload.UploadConfig), else None."""
    cfg = getattr(args, "config", None)
    upload = cfg.parts.get("upload") if cfg is not None else None
    return upload if upload is not None and "clips" in upload.what else None


def main(args: argparse.Namespace) -> int:
    d = Daemon("recorder", args, METRIC_LABELS)
    root = Path(args.dir)
    index = Index(root)  # on a full disk it opens later (Index.prepare): the recorder starts anyway
    keeper = Keeper(root, index, args.pre, args.post, tuple(name_list(args.keep_types)), d.counters, d.log,
                    d.repeats, args.max_clock_skew, args.keep_retain, args.keep_max_bytes)
    retention = Retention(root, index, Limits(args.retain, args.max_bytes, args.min_free), d.counters, d.log,
                          d.repeats)
    pause = Pause(d.counters, d.log, notify=bool(args.sink))  # told to the sink, with --sink
    ring = Ring(root, index, keeper, retention, args.segment, Encoding(preset=args.preset, crf=args.crf),
                d.counters, d.log, d.repeats, args.max_cameras, args.max_clock_skew, args.max_frame_bytes,
                args.max_segment_bytes, args.encode_memory, pause)
    clips = None
    if (upload := clips_upload(args)) is not None:  # before the ring: every clip completed from now on goes
        clips = ClipUploads(Uploader(upload, root, d.counters, d.log), root, index, d.counters, d.log, d.repeats)
        keeper.completed = clips.completed
    ring.tick()  # recovers what a killed recorder left open
    if clips is not None:
        clips.resume(time.time_ns())  # final clips completed but never queued (killed mid-remux)

    # each SUB is connected by its PeerWatch, which names an address that never answers
    frames = d.socket(zmq.SUB, rcvhwm=SUB_HWM, linger=0)
    subscribed: set[bytes] = set()

    def subscribe(cfg: Config | None) -> None:
        """What the recorder takes of the extractors' streams: everything (without --config), or
        the frames, status and end of each camera the file records (an extractor publishes every
        camera, for live views too; see recorded_topics), and the marker of each camera it records
        (extractor.subscribers): what an extractor's --publish-wait waits for, not a viewer."""
        recorded = None if cfg is None or not cfg.cameras else [c.name for c in cfg.cameras.values() if c.record]
        want = recorded_topics(cfg) | recorder_topics(recorded)
        for topic in want - subscribed:
            frames.setsockopt(zmq.SUBSCRIBE, topic)
        for topic in subscribed - want:
            frames.setsockopt(zmq.UNSUBSCRIBE, topic)
        subscribed.clear()
        subscribed.update(want)

    subscribe(d.config)
    d.on(frames, lambda parts: on_frames(ring, parts))
    peers = [d.peer_watch(frames, args.subscribe, SERVER_OF["subscribe"])]
    if args.events:
        events = d.socket(zmq.SUB, linger=0)
        events.setsockopt(zmq.SUBSCRIBE, b"")
        d.on(events, lambda parts: on_event(ring, parts))
        peers.append(d.peer_watch(events, args.events, SERVER_OF["events"]))
    if args.sink:
        push = d.socket(zmq.PUSH, sndhwm=PUSH_HWM, linger=1000)
        peers.append(d.peer_watch(push, args.sink, SERVER_OF["sink"]))

        def tell() -> None:
            pause.send(push)
            if clips is not None:
                clips.tell(push)

        d.every(UPLOADED_EVERY_S, tell)
    d.every(PEER_CHECK_S, lambda: [p.check() for p in peers])

    def housekeeping() -> None:
        ring.close_idle(max(2 * ring.segment_s, 10.0))
        ring.tick()
        ring.enforce_retention()
        if clips is not None:
            clips.retry(time.time_ns())  # MP4s that could not be written (a full disk)

    d.every(RETENTION_EVERY_S, housekeeping, now=True)
    running = args

    def reload(cfg: Config | None) -> None:
        """The file's new [recorder] settings, applied now (ConfigError: the reload is refused)."""
        nonlocal running
        if cfg is None:
            d.log.info("nothing to reload: the recorder was started without --config")
            return
        subscribe(cfg)  # cameras recorded or not any more
        new = args_from_config(args, cfg)  # the file was judged whole already (check-config's rules)
        changed = {name: getattr(new, name) for name in LIVE if getattr(new, name) != getattr(running, name)}
        apply_settings(new, keeper, retention, ring)
        running = new
        d.log.info("recorder settings reloaded", changed=changed)
        ring.enforce_retention()  # new limits at once, not at the next round

    d.on_reload(reload)
    d.reloadable = set(LIVE)  # the skeleton names any other changed setting as needing a restart
    d.stats_extra(lambda: {"cameras": sorted(ring.cameras), "paused": pause.paused})
    d.gauges(lambda: {"paused": ("1 while recording is paused for space (the free-space floor cannot be met with "
                                 "the ring's own files), else 0", (), {(): float(pause.paused)})})
    until = set(name_list(args.exit_when_ended))

    def ended() -> bool:
        if until and until <= ring.ended:
            d.log.info("all cameras ended", cameras=sorted(until))
            return True
        return False

    def cleanup() -> None:
        try:
            ring.close_all()  # of the clips completed now, the MP4 under way is finished; the rest go at the next start
        finally:
            if args.sink:
                pause.send(push)  # what the PUSH takes now goes within its linger
            if clips is not None:
                clips.tell(push)
                clips.close()
            index.close()
            for p in peers:
                p.close()

    d.log.info("recorder started", subscribe=args.subscribe, dir=str(root), events=args.events, sink=args.sink,
               upload="clips" if clips is not None else None,
               segment_s=args.segment, retain_s=args.retain, max_bytes=args.max_bytes, min_free=args.min_free,
               keep_retain_s=args.keep_retain, keep_max_bytes=args.keep_max_bytes, max_cameras=args.max_cameras,
               max_frame_bytes=args.max_frame_bytes, max_segment_bytes=args.max_segment_bytes,
               encode_memory=args.encode_memory)
    code = d.run(until=ended, cleanup=cleanup)
    d.log.info("recorder stopped", stats=d.stats())
    return code


def recorded_topics(cfg: Config | None) -> set[bytes]:
    """The SUB topics of what to record: everything published, without a file (or one that names
    no cameras); else each ``record = true`` camera's frames, status and end (common.wire.camera_topic)."""
    if cfg is None or not cfg.cameras:
        return {b""}
    return {wire.camera_topic(kind, c.name) for c in cfg.cameras.values() if c.record
            for kind in (wire.FrameHeader, wire.Status, wire.Eos)}


def apply_settings(args: argparse.Namespace, keeper: Keeper, retention: Retention, ring: Ring) -> None:
    """The ``LIVE`` settings of ``args`` into the running recorder (a reload)."""
    keeper.configure(args.pre, args.post, tuple(name_list(args.keep_types)), args.max_clock_skew, args.keep_retain,
                     args.keep_max_bytes)
    retention.limits = Limits(args.retain, args.max_bytes, args.min_free)
    ring.max_cameras, ring.max_skew_ns = args.max_cameras, int(args.max_clock_skew * 1e9)
    ring.encoding = Encoding(preset=args.preset, crf=args.crf)  # files started from now on
    ring.max_segment_bytes, ring.encode_memory = args.max_segment_bytes, args.encode_memory


def on_frames(ring: Ring, parts: list[zmq.Frame]) -> None:
    """One message of the frames SUB: a frame, or a camera's Status or Eos."""
    buffers = [p.buffer for p in parts]
    msg = wire.unpack(buffers[0])
    if isinstance(msg, wire.FrameHeader):
        ring.on_frame(buffers)
    elif isinstance(msg, (wire.Status, wire.Eos)):
        if len(buffers) != 1:
            raise wire.MalformedMessage("bad_part_count", f"{len(buffers)} parts")
        ring.on_control(msg)
    else:
        wire.expect(msg, wire.FrameHeader, wire.Status, wire.Eos)


def on_event(ring: Ring, parts: list[zmq.Frame]) -> None:
    """One message of the events SUB: an Event."""
    ring.on_event(wire.single([p.buffer for p in parts], wire.Event))
