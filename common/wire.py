"""camwire's wire format: every message that crosses a ZeroMQ socket, one typed definition each.

Every message is multipart. Part 0 is always a msgpack map with ``v`` (PROTOCOL_VERSION) and
``kind``; the kind names one of the Structs below, and decoding part 0 *is* validation (msgspec):
a field of the wrong type, out of range (negative sizes, NaN or infinite boxes and times, seq or
ts_ns past 2**62), too long (a camera name is ``^[A-Za-z0-9_-]{1,64}$``), or a kind nobody sends
raises :class:`MalformedMessage` with a short ``reason`` that daemons use as a counter label.
msgpack lets a map repeat a key and msgspec keeps the last, so a forged message could carry a
camera's topic (see :func:`camera_topic`) and be read as another camera: :func:`unpack` refuses a
message whose topic names a camera other than its own (``topic_mismatch``) and any map that
repeats a key (``duplicate_key``), at the top and in every nested map the kind has.

What goes where:

- ``frame`` (extractor -> ventilator -> worker; extractor PUB -> recorder): ``[FrameHeader,
  payload]``. The payload is pixels (``raw``: exactly width*height*channels*itemsize bytes,
  ``lz4``: an LZ4 block of those, ``jpeg``: a JPEG file) or, with the extractor's
  ``--publish-enc passthrough``, the source's own H.264/HEVC packet in Annex B form (key packets
  also carry the codec's ``extradata``). Pixel codecs live in common.pixels, so a relay such as
  the ventilator never loads OpenCV: it checks a frame with :func:`peek_frame` alone.
- ``result`` (worker -> sink): one part, or two when the frame's pixels ride along (something
  was found, or the lens is covered): an LZ4 block of them (raw to a sink on the worker's
  host), their size in ``Result.image``; the sink makes a JPEG of them only for a snapshot or a
  frame it keeps (common.pixels.Pixels). A frame that came in shared memory, to a sink on the
  worker's host, keeps its pixels there instead: one part, ``image_enc = "shm"`` and
  ``image_shm`` naming the slot, which the worker leaves held and the sink copies and releases.
- ``ready`` / ``heartbeat`` (worker -> ventilator), ``heartbeat`` / ``reset`` / ``bye``
  (ventilator -> worker): credits and liveness, see classifier.ventilator.
- ``status`` / ``eos`` (extractor -> ventilator -> worker -> sink, and extractor PUB ->
  recorder): a camera's state and its end; ``motion`` (extractor -> ventilator -> worker ->
  sink, not to the recorder): its motion state; ``workers`` (ventilator -> sink): the pool's load.
- ``event`` (sink PUB -> recorder and anyone): what happened.
- ``switch`` / ``reviewed`` (web console -> sink): a camera's switch set, objects marked reviewed.
- a recorder's subscriptions to an extractor's PUB also carry a mark (:func:`recorder_topic`)
  that no message starts with, so the extractor tells a recorder from a console viewer.

Nothing here ever unpickles: msgpack carries data and nothing else (no ext types).
"""

from __future__ import annotations

from typing import Annotated, Any, Iterable, Literal, Sequence, Union

import msgspec
import numpy as np

from camwire.common import camera_state

PROTOCOL_VERSION = 1
CAMERA_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ENCODINGS = ("raw", "lz4", "jpeg")  # pixels
PACKET_ENCODINGS = ("h264", "hevc")  # compressed packets, passed through from the source
# the pixel formats a frame (and a result's pixels) may be in: 3 channels in either order, one grey
# channel (full range, 0-255), or planar YUV 4:2:0 (I420: the Y plane, then U and V at half size,
# as one 8-bit array of ``height * 3 / 2`` rows, limited range (Y 16-235) as video decoders give
# it, in the colour matrix ``YuvMatrix`` names: BT.601, or BT.709 for HD cameras that say so)
PIXEL_FORMATS = ("bgr", "rgb", "gray", "yuv420")
PixelFormat = Literal["bgr", "rgb", "gray", "yuv420"]
YuvMatrix = Literal["bt601", "bt709"]
DTYPES = {"uint8": np.uint8, "uint16": np.uint16}
MAX_SIDE = 16384  # larger than any camera; stops a forged header from asking for terabytes
MAX_HEADER_BIN = 65536  # extradata is tens of bytes; a header never needs more than this
# the largest frame a daemon decodes unless told otherwise (8K RGBA); a header claiming more is
# dropped and counted before a byte is allocated for it
DEFAULT_MAX_FRAME_BYTES = 7680 * 4320 * 4
MAX_SEQ = 2**62
MAX_NS = 2**62  # year 2116: far past any capture time, far below int64's end
LIMIT = 1e12  # any float on the wire: finite and within this
MAX_MOTION_BOXES = 64  # moving areas in one frame (extractor.motion keeps the largest, drops the rest)

Buffer = bytes | memoryview
SHM_RING_PATTERN = r"^camwire-[A-Za-z0-9_.-]{1,200}$"  # common.shm's segment names, in /dev/shm

CameraName = Annotated[str, msgspec.Meta(pattern=CAMERA_NAME_PATTERN)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]  # workers, detectors, labels
Text = Annotated[str, msgspec.Meta(max_length=4096)]  # reasons and errors
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Nanos = Annotated[int, msgspec.Meta(ge=0, le=MAX_NS)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Real = Annotated[float, msgspec.Meta(ge=-LIMIT, le=LIMIT)]  # never NaN, never infinite
Box = tuple[Real, Real, Real, Real]  # [x1, y1, x2, y2] in source pixels
MotionBoxes = Annotated[list[Box], msgspec.Meta(max_length=MAX_MOTION_BOXES)]
Rate = Annotated[float, msgspec.Meta(ge=0, le=1e6)]
Side = Annotated[int, msgspec.Meta(gt=0, le=MAX_SIDE)]
Credits = Annotated[int, msgspec.Meta(ge=0, le=4096)]
Score = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_NS / 1e9)]  # a capture time, s since the epoch


class MalformedMessage(ValueError):
    """A message that does not follow the wire format; ``reason`` is a short counter label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Message(msgspec.Struct, tag_field="kind", kw_only=True, frozen=True):
    """Every message: ``v`` and, from the subclass's tag, ``kind``."""

    v: Literal[1] = PROTOCOL_VERSION


class OfFrame(Message):
    """The fields that name one frame of one camera: a frame's header and its result share them."""

    camera: CameraName
    seq: Seq
    ts_ns: Nanos
    width: Side
    height: Side
    pts: Real | None = None


class ShmRef(msgspec.Struct, array_like=True, frozen=True):
    """Where a frame's pixels wait in shared memory (common.shm) instead of riding in part 1:
    the host (``common.shm.host_id``: who can map it), the ring (a /dev/shm segment), the slot,
    and the generation the slot had when written; a reader checks it after reading, so a slot
    reused meanwhile is never taken for this frame."""

    host: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    ring: Annotated[str, msgspec.Meta(pattern=SHM_RING_PATTERN)]
    slot: Annotated[int, msgspec.Meta(ge=0, lt=4096)]
    gen: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]


class FrameHeader(OfFrame, tag="frame"):
    """What a frame says about itself; the pixels (or the packet) travel in the next part.

    ``ts_ns`` is the capture time (wall clock, ns since the epoch); ``pts``/``dts`` are seconds
    in the source's timeline; ``live`` is False for a file read as fast as the pipeline takes it.
    """

    dts: Real | None = None
    channels: Literal[1, 3, 4] = 3
    dtype: Literal["uint8", "uint16"] = "uint8"
    enc: Literal["raw", "lz4", "jpeg", "h264", "hevc"] = "raw"
    live: bool = True
    key: bool = False
    extradata: Annotated[bytes, msgspec.Meta(max_length=MAX_HEADER_BIN)] | None = None
    motion: MotionBoxes = []  # where the extractor saw motion in this frame (extractor.motion)
    # the seq of the frame this camera sent to the pool before this one (-1: none before it;
    # None: not known, a published frame): the sink's reorder knows a sampling gap from a loss
    prev: Annotated[int, msgspec.Meta(ge=-1, le=MAX_SEQ)] | None = None
    # a polled feed's frame (extractor.poll): the clip it came from (its ETag, or a short hash of
    # its body) and its index in that clip; None from a stream
    clip: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    clip_index: Count | None = None
    # the pixels are in shared memory (part 1 is then empty): a frame that crossed no host
    shm: ShmRef | None = None
    # (width, height) of the source when the extractor resized the frame for detection
    # (a camera's detect_size): a detector's boxes are scaled back to it, so results, events and
    # snapshots speak in source pixels; None: the pixels are the source's
    source: tuple[Side, Side] | None = None
    # the pixels' format (a camera's pixel_format): "bgr" with ``channels`` 1 is grey, as it was
    # before formats were named; "rgb" has 3 channels, "gray" and "yuv420" 1 (yuv420 even sides:
    # see PIXEL_FORMATS)
    pix: PixelFormat = "bgr"
    # a frame resized for detection (``source`` set) on a host whose pool takes shared memory:
    # the source's own pixels, YUV 4:2:0 at its size, in the camera's source ring (common.shm,
    # overwritten in turn, never held): the sink copies them for the snapshots it keeps, while
    # they are still there (a snapshot at the source's resolution), else uses the detector's
    source_shm: ShmRef | None = None
    matrix: YuvMatrix = "bt601"  # of YUV pixels: this frame's (pix yuv420) and its source frame's

    @property
    def is_packet(self) -> bool:
        return self.enc in PACKET_ENCODINGS

    @property
    def format(self) -> str:
        """The pixels' format, one of PIXEL_FORMATS (a one-channel "bgr" frame is grey)."""
        return "gray" if self.channels == 1 and self.pix == "bgr" else self.pix

    @property
    def raw_size(self) -> int:
        if self.pix == "yuv420":
            return self.width * self.height * 3 // 2
        return self.width * self.height * self.channels * np.dtype(self.dtype).itemsize

    @property
    def shape(self) -> tuple[int, ...]:
        if self.pix == "yuv420":
            return (self.height * 3 // 2, self.width)
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)

    def with_enc(self, enc: str) -> "FrameHeader":
        return msgspec.structs.replace(self, enc=enc)


class Detection(msgspec.Struct, frozen=True):
    """One thing found in a frame; ``box`` is ``[x1, y1, x2, y2]`` in source pixels."""

    label: Name
    confidence: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    box: tuple[Real, Real, Real, Real]


class Flags(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a detector says of a whole frame (classifier.detectors.covered)."""

    covered: bool | None = None
    covered_after: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1
    scene: Literal["uniform", "dark", "bright", "covered", "clear"] | None = None
    edge_fraction: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None


class Result(OfFrame, tag="result"):
    """One per frame a worker took, always: ``error`` says why when decoding or the detector failed."""

    worker: Name | None = None
    detector: Name | None = None
    detections: Annotated[list[Detection], msgspec.Meta(max_length=10_000)] = []
    flags: Flags = Flags()
    error: Text | None = None
    infer_ms: Rate = 0.0
    motion: MotionBoxes = []  # the frame header's, copied by the worker
    prev: Annotated[int, msgspec.Meta(ge=-1, le=MAX_SEQ)] | None = None  # the frame header's
    # (width, height, channels) of the 8-bit pixels the result brings (in part 1, or in the slot
    # ``image_shm`` names), in ``image_pix`` format (channels 1 for grey and YUV 4:2:0),
    # ``image_enc``; the detector's, smaller than width x height when the frame was resized for
    # detection (boxes are in width x height, the source's). None: no pixels
    image: tuple[Side, Side, Literal[1, 3]] | None = None
    # part 1: raw to a sink on the worker's host, else an LZ4 block; "shm": no part 1, the pixels
    # are still in the frame's shared-memory slot, ``image_shm``
    image_enc: Literal["raw", "lz4", "shm"] = "lz4"
    image_pix: PixelFormat = "bgr"
    # with image_enc "shm" only: the slot, which the worker left held; the sink copies the pixels
    # out and releases it (sink.source_frames)
    image_shm: ShmRef | None = None
    source_shm: ShmRef | None = None  # the frame header's, when its pixels are sent: the source's pixels
    matrix: YuvMatrix = "bt601"  # the frame header's: the colour matrix of YUV pixels (part 1's, the source's)


class Ready(Message, tag="ready"):
    """A worker's credits (frames it can take now) and the frames it has finished.

    ``detector``: the one it serves (its ``--serves NAME``, else its ``--detector`` spec with
    an onnx model named by its file name, not its path: classifier.detector_name.served_name); a camera that names a detector gets frames only from workers serving it. None (a
    worker from before routing): it serves only the cameras that name no detector."""

    worker: Name
    credits: Credits = 0
    done: Annotated[list[tuple[CameraName, Seq]], msgspec.Meta(max_length=4096)] = []
    leaving: bool = False
    detector: Name | None = None
    # the worker's shared-memory host (common.shm.host_id): frames in a ring on another host reach
    # it inline; None: it maps no shared memory
    host: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class Heartbeat(Message, tag="heartbeat"):
    """Liveness both ways. A worker's carries ``sent`` (its clock, ns); the ventilator answers
    at once with ``echo`` set to it, so the worker measures its round trip (its credit window)."""

    worker: Name | None = None
    sent: Nanos | None = None
    echo: Nanos | None = None


class Reset(Message, tag="reset"):
    """To a worker the ventilator does not know (either side restarted): send your credits again."""


class Bye(Message, tag="bye"):
    """To a leaving worker: nothing more will come."""


# what an extractor reports of a camera (common.camera_state: what each state means)
CameraState = camera_state.Reported


class Refused(msgspec.Struct, frozen=True):
    """Failed CURVE handshakes on one of a daemon's sockets, for one reason, since it started
    (common.curve): shown in status.db so an operator sees a stranger, or a key not yet listed.

    ``peer``: the client's IP address (``unknown`` where it could not be read, ``other`` past the
    daemon's cap on peers named); ``key``: the fingerprint of the key it offered (common.curve.
    fingerprint: its first 8 Z85 characters; ``-``: none seen). Both None on a row that counts
    what no peer was named for (a client's own refusals, a daemon from before peers were named)."""

    socket: Text
    reason: Name
    count: Count
    peer: Name | None = None
    key: Name | None = None


Refusals = Annotated[list[Refused], msgspec.Meta(max_length=256)]


def refusals(counted: dict, peers: dict | None = None) -> list[Refused]:
    """A daemon's ``handshakes_failed`` counters ({socket: {reason: n}}) as sent on the wire, one
    row per peer named in ``peers`` (its ``refused_peers``: {socket: {reason: {peer: {key: n}}}}),
    and one without a peer for the rest."""
    rows: list[Refused] = []
    for sock, reasons in sorted(counted.items()):
        for why, n in sorted(reasons.items()):
            named = [Refused(socket=sock[:4096], reason=why[:128], count=m, peer=peer[:128], key=key[:128])
                     for peer, keys in sorted(((peers or {}).get(sock, {}).get(why, {})).items())
                     for key, m in sorted(keys.items())]
            rest = n - sum(r.count for r in named)
            rows += named + ([Refused(socket=sock[:4096], reason=why[:128], count=rest)] if rest > 0 else [])
    return rows[:256]


class Status(Message, tag="status"):
    """A camera's state from its extractor, on every change and every few seconds while it runs.

    ``failed``: the source cannot work as configured (no such file, unknown protocol, 401/403/404,
    not a video); it is retried on a long backoff. ``attempts``: failed rounds since the last frame.
    """

    camera: CameraName
    state: CameraState
    ts_ns: Nanos
    reason: Text | None = None
    fps_in: Rate = 0.0
    reconnects: Count = 0
    attempts: Count = 0
    last_error: Text | None = None
    refused: Refusals = []  # the extractor process's, as its heartbeats carry them
    # frames this camera's extractor did not send on, by why, since it started:
    # "dropped/<reason>" (a consumer too slow) and "skipped/<reason>" (sampling, no motion)
    drops: Annotated[dict[Name, Count], msgspec.Meta(max_length=64)] = {}
    decoded: Count = 0  # frames its decoder gave, since the extractor started (common.frame_account)
    sent: Count = 0  # frames pushed to the pool, likewise


class Eos(Message, tag="eos"):
    """A file camera read to its end; the ventilator adds ``results``, what the sink will get."""

    camera: CameraName
    sent: Count = 0
    last_seq: Annotated[int, msgspec.Meta(ge=-1, le=MAX_SEQ)] = -1
    fps_in: Rate = 0.0
    results: Count | None = None
    reason: Text | None = None  # why a file ended before its end ("ended early: ..."), for its status


class Motion(Message, tag="motion"):
    """A camera's motion state from its extractor, which sees every frame (extractor.motion).

    Sent when motion starts and when it ends (after the extractor's ``--motion-off-delay`` with
    none), and again with every status heartbeat, so a sink that restarted or lost one learns the
    state. ``ts_ns``: capture time of the frame that changed it (the same in the repeats);
    ``started_ns``, on an end: when the stretch it ends began, so a sink that gets the end
    before the start (they may ride through different workers) still tells the whole stretch.
    ``boxes``: where it moved in that frame, in source pixels.
    """

    camera: CameraName
    active: bool
    ts_ns: Nanos
    started_ns: Nanos | None = None
    seq: Seq | None = None
    boxes: MotionBoxes = []


class WorkerLoad(msgspec.Struct, frozen=True):
    name: Name
    credits: Credits = 0
    in_flight: Count = 0
    dispatched: Count = 0
    completed: Count = 0
    lost: Count = 0
    leaving: bool = False
    detector: Name | None = None  # the one it serves (Ready.detector)


class Unserved(msgspec.Struct, frozen=True):
    """A detector a camera wants that no connected worker serves, and the camera's frames counted
    for it meanwhile (since the ventilator started)."""

    camera: CameraName
    detector: Name
    frames: Count = 0


class PoolAccount(msgspec.Struct, frozen=True):
    """One camera's frames at the ventilator since it started: ``received`` (once per detector the
    camera wants), each final bucket, and those still ``waiting`` or ``in_flight``; what each
    bucket means, and that each delivery lands in exactly one, is common.frame_account's."""

    received: Count = 0
    superseded: Count = 0
    unserved: Count = 0
    worker_lost: Count = 0
    deadline: Count = 0
    processed: Count = 0
    late: Count = 0
    waiting: Count = 0
    in_flight: Count = 0


class Workers(Message, tag="workers"):
    """The ventilator's view of its pool, every few seconds and on every join or departure; and
    ``unserved``, each camera's detector that no worker serves now (classifier.dispatch); and
    ``accounts``, each camera's frames by final bucket (common.frame_account). ``ventilator``
    tells the reports of several ventilators apart (its host and backend address; None from a
    ventilator older than it)."""

    ts_ns: Nanos
    ventilator: Name | None = None
    workers: Annotated[list[WorkerLoad], msgspec.Meta(max_length=4096)] = []
    backlog: dict[CameraName, Count] = {}
    unserved: Annotated[list[Unserved], msgspec.Meta(max_length=4096)] = []
    refused: Refusals = []  # the ventilator's own
    accounts: Annotated[dict[CameraName, PoolAccount], msgspec.Meta(max_length=4096)] = {}


# what the sink makes (sink.events, sink.tracking); the recorder's --keep-types names some of them
EVENT_TYPES = ("object", "camera_covered", "camera_uncovered", "camera_online", "camera_offline",
               "camera_failed", "motion_start", "motion_end", "uploaded", "suggested_mask", "camera_switch")


class Event(Message, tag="event"):
    """What the sink publishes (and writes as a JSON line): something that happened on a camera.

    ``id`` is unique forever: capture time in ns, camera and type (common.ids).

    A tracked object (``type`` ``object``, sink.tracking) has ``phase`` ``start``, ``update``
    or ``end``, and ``object_id`` (the id of its ``start`` event) in all three; ``label``,
    ``score`` (in the newest frame), ``top_score``, ``first_seen``/``last_seen`` (capture time,
    s), ``box`` (the newest, in source pixels), ``zones`` (entered so far) and ``snapshot`` (its
    best frame so far). Other types leave these at their defaults.
    An object's ``stationary`` says it has not moved for a while (an ``update`` says when it
    stops and when it moves again); an ``update``'s ``changes`` say what it tells, among
    ``label``, ``zones``, ``stationary``, ``active`` (moving again), ``snapshot`` (a clearly better
    one) and ``score`` (a higher top score, the only change that is not worth an alert).
    A ``suggested_mask`` event (sink.tracking) names a place (``box``, ``label``) where the model
    sees an object that never moved: a fixed post it takes for a person, to be masked.
    """

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=160)]
    type: Name
    camera: CameraName
    ts: Annotated[float, msgspec.Meta(ge=0, le=MAX_NS / 1e9)]
    seq: Seq | None = None
    detections: list[Detection] = []
    snapshot: Text | None = None
    worker: Name | None = None
    detector: Name | None = None
    reason: Text | None = None
    scene: Name | None = None
    object_id: Annotated[str, msgspec.Meta(min_length=1, max_length=160)] | None = None
    phase: Literal["start", "update", "end"] | None = None
    label: Name | None = None
    score: Score | None = None
    top_score: Score | None = None
    first_seen: Seconds | None = None
    last_seen: Seconds | None = None
    box: tuple[Real, Real, Real, Real] | None = None
    zones: Annotated[list[Name], msgspec.Meta(max_length=256)] = []
    stationary: bool = False
    changes: Annotated[list[Name], msgspec.Meta(max_length=16)] = []
    # ``uploaded`` (common.upload): the id of the event whose media are now in object storage,
    # and their URLs in key order, the manifest's last (an object's frames: up to 300 and the manifest)
    of: Annotated[str, msgspec.Meta(min_length=1, max_length=160)] | None = None
    urls: Annotated[list[Text], msgspec.Meta(max_length=1024)] = []


# a camera's switches (sink.switches): what an operator turns off without editing camwire.toml
SWITCHES = ("detect", "record", "snapshots")
Who = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]  # "console 10.0.0.7", "mqtt"


class Switch(Message, tag="switch"):
    """One of a camera's switches set (console -> sink, or the sink's own MQTT command topics):
    ``detect`` (its objects become events), ``record`` (the recorder writes it), ``snapshots``
    (the sink writes its pictures). The sink keeps them (they survive a restart), logs ``by``,
    and tells each change as a ``camera_switch`` event (``reason``: ``SWITCH=on|off by WHO``)."""

    camera: CameraName
    switch: Literal["detect", "record", "snapshots"]
    on: bool
    by: Who


def switch_reason(switch: str, on: bool, by: str) -> str:
    """A ``camera_switch`` event's ``reason``: ``SWITCH=on|off by WHO`` (``record=off by mqtt``)."""
    return f"{switch}={'on' if on else 'off'} by {by}"


def switch_told(event: Event) -> tuple[str, bool] | None:
    """The switch and its setting a ``camera_switch`` event tells (read from its ``reason``, as
    :func:`switch_reason` wrote it: the recorder and MQTT read it back), or None for any other event."""
    if event.type != "camera_switch" or not event.reason:
        return None
    switch, _, value = event.reason.partition(" ")[0].partition("=")
    if switch not in SWITCHES or value not in ("on", "off"):
        return None
    return switch, value == "on"


class Reviewed(Message, tag="reviewed"):
    """Tracked objects marked reviewed, or not (console -> sink, which keeps the marks in its store);
    ``user``: whose mark (a console user), or None for everyone's."""

    object_ids: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=160)]],
                          msgspec.Meta(min_length=1, max_length=1024)]
    by: Who
    reviewed: bool = True
    user: Name | None = None


AnyMessage = Union[FrameHeader, Result, Ready, Heartbeat, Reset, Bye, Status, Eos, Motion, Workers, Event, Switch,
                   Reviewed]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyMessage)
_keys = msgspec.msgpack.Decoder(dict[str, msgspec.Raw])  # a map's keys, its values left undecoded
_items = msgspec.msgpack.Decoder(list[msgspec.Raw])


def pack(message: Message) -> bytes:
    """Serialise one message's part 0."""
    return _encoder.encode(message)


def unpack(part: Buffer) -> AnyMessage:
    """Decode and validate part 0 of any message: its fields, then its topic and its maps' keys."""
    message = _decode(part)
    if _encoder.encode(message) != part:  # not byte for byte as pack() makes it (which repeats no key): look closer
        kind = type(message)
        head = _TOPIC_HEADS.get(kind)
        if head is not None and part[:len(head)] == head:
            expected = head + _encoder.encode(message.camera)
            if part[:len(expected)] != expected:
                raise MalformedMessage("topic_mismatch", f"the topic names another camera than {message.camera!r}")
        _unique_keys(part, _MAPS[kind])
    return message


def _decode(part: Buffer) -> AnyMessage:
    try:
        return _decoder.decode(part)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if text.endswith("`$.v`"):
            raise MalformedMessage("bad_version", text) from None
        if text.startswith("Expected `object`") and " - at " not in text:
            raise MalformedMessage("bad_header", text) from None
        if text.endswith("`$.kind`") or "missing required field `kind`" in text:
            raise MalformedMessage("bad_kind", text) from None
        raise MalformedMessage("bad_field", text) from None
    except msgspec.DecodeError as exc:
        raise MalformedMessage("bad_msgpack", str(exc)) from None


# -- repeated keys: msgspec keeps a repeated key's last value; camwire refuses the message ------------

class _Map(msgspec.Struct, frozen=True):
    """Where maps are inside a map: ``fields`` (a Struct's, by name) or ``values`` (a dict's)."""

    fields: dict[str, Any] = {}
    values: Any = None


class _List(msgspec.Struct, frozen=True):
    item: Any


def _plan(t: Any) -> Any:
    """Which parts of a value of type ``t`` (msgspec.inspect) can hold a map: None for none."""
    inspect = msgspec.inspect
    if isinstance(t, inspect.Metadata):
        return _plan(t.type)
    if isinstance(t, inspect.UnionType):
        plans = [p for p in map(_plan, t.types) if p is not None]
        assert len(plans) <= 1, "one container type per union (wire's own types never have more)"
        return plans[0] if plans else None
    if isinstance(t, inspect.StructType) and not t.array_like:
        return _Map(fields={f.encode_name: p for f in t.fields if (p := _plan(f.type)) is not None})
    if isinstance(t, inspect.DictType):
        return _Map(values=_plan(t.value_type))
    if isinstance(t, (inspect.ListType, inspect.VarTupleType)):
        item = _plan(t.item_type)
        return _List(item) if item is not None else None
    return None  # scalars, and tuples (boxes, done): no map inside any of the wire's


def _map_length(part: Buffer) -> int | None:
    """The entry count of the msgpack map ``part`` starts with; None when it is no map."""
    first = part[0]
    if 0x80 <= first <= 0x8F:
        return first & 0x0F
    if first == 0xDE:
        return int.from_bytes(part[1:3], "big")
    if first == 0xDF:
        return int.from_bytes(part[1:5], "big")
    return None


def _unique_keys(part: Buffer, plan: Any) -> None:
    """MalformedMessage ``duplicate_key`` when a map in ``part`` (as far as ``plan`` reaches:
    every map of a valid message) repeats a key. One extra C-level decode of the keys per map,
    values skipped; only for a message that is not byte for byte pack()'s (another encoder's, or
    a forgery): what camwire's daemons send costs one encode and a compare instead (a frame header
    built and checked: 2.0 us before, 2.3 us with it, bench/transport.py framing)."""
    if isinstance(plan, _List):
        if part[0] in (0xDC, 0xDD) or 0x90 <= part[0] <= 0x9F:
            for item in _items.decode(part):
                _unique_keys(memoryview(item), plan.item)
        return
    count = _map_length(part)
    if count is None:  # nil where an optional map may be
        return
    try:
        keys = _keys.decode(part)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:  # not after a valid decode; said all the same
        raise MalformedMessage("bad_field", str(exc)) from None
    if len(keys) != count:
        raise MalformedMessage("duplicate_key", f"a map of {count} entries has {len(keys)} distinct keys")
    if plan.fields:
        for name, inner in plan.fields.items():
            if (value := keys.get(name)) is not None:
                _unique_keys(memoryview(value), inner)
    elif plan.values is not None:
        for value in keys.values():
            _unique_keys(memoryview(value), plan.values)


_MAPS = {kind: _plan(msgspec.inspect.type_info(kind)) for kind in AnyMessage.__args__}


def expect(message: AnyMessage, *kinds: type[Message]) -> None:
    """Raise ``unexpected_kind`` unless ``message`` is one of ``kinds``."""
    if not isinstance(message, kinds):
        raise MalformedMessage("unexpected_kind", type(message).__name__)


def single(parts: Sequence[Buffer], *kinds: type[Message]) -> AnyMessage:
    """The message of a one-part ZeroMQ message, of one of ``kinds`` (else MalformedMessage)."""
    if len(parts) != 1:
        raise MalformedMessage("bad_part_count", f"{len(parts)} parts")
    message = unpack(parts[0])
    expect(message, *kinds)
    return message


def fits_format(pix: str, channels: int, width: int, height: int, dtype: str = "uint8") -> bool:
    """Whether pixels of format ``pix`` can have that shape: RGB three channels, grey one, YUV 4:2:0
    one 8-bit channel and even sides; BGR as before (1, 3 or 4 channels)."""
    if pix == "rgb":
        return channels == 3
    if pix == "gray":
        return channels == 1
    if pix == "yuv420":
        return channels == 1 and dtype == "uint8" and width % 2 == 0 and height % 2 == 0
    return True


def peek_frame(parts: Sequence[Buffer], max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> FrameHeader:
    """Check a frame's header, part count and size without touching the pixels (for relays)."""
    if len(parts) != 2:
        raise MalformedMessage("bad_part_count", f"{len(parts)} parts")
    header = unpack(parts[0])
    if not isinstance(header, FrameHeader):
        raise MalformedMessage("unexpected_kind", f"{type(header).__name__} where a frame was expected")
    if not header.is_packet and header.raw_size > max_bytes:
        raise MalformedMessage("too_large", f"{header.width}x{header.height}x{header.channels} {header.dtype} "
                                            f"is {header.raw_size} bytes, the limit {max_bytes}")
    if len(parts[1]) > max_bytes:
        raise MalformedMessage("too_large", f"payload of {len(parts[1])} bytes, the limit {max_bytes}")
    if not header.is_packet and not fits_format(header.pix, header.channels, header.width, header.height,
                                                header.dtype):
        raise MalformedMessage("bad_format", f"{header.pix} pixels cannot be {header.width}x{header.height}x"
                                             f"{header.channels} {header.dtype}")
    if header.shm is not None:
        if header.enc != "raw" or len(parts[1]):
            raise MalformedMessage("bad_shm", "a shared-memory frame is raw with an empty part 1")
    elif header.enc == "raw" and len(parts[1]) != header.raw_size:
        raise MalformedMessage("bad_size", f"{len(parts[1])} bytes, header says {header.raw_size}")
    return header


# the other fields a message of each kind needs, to pack one whose start is its camera's topic
_TOPIC_FIELDS: dict[type, dict] = {FrameHeader: {"seq": 0, "ts_ns": 0, "width": 1, "height": 1},
                                   Result: {"seq": 0, "ts_ns": 0, "width": 1, "height": 1},
                                   Status: {"state": "online", "ts_ns": 0}, Eos: {}}


def camera_topic(kind: type[FrameHeader] | type[Result] | type[Status] | type[Eos], camera: str) -> bytes:
    """The bytes every packed message of ``kind`` about ``camera`` starts with: a SUB socket
    subscribed to them gets that camera's frames (results, status) only, and the publisher
    filters, so a camera no one wants costs no bandwidth. msgspec writes a Struct's fields in one
    fixed order, tag and camera first, and the name's length prefix keeps ``cam1`` from matching
    ``cam10``."""
    packed = pack(kind(camera=camera, **_TOPIC_FIELDS[kind]))
    name = _encoder.encode(camera)
    return packed[:packed.index(b"\xa6camera" + name) + 7 + len(name)]


# each topic kind's packed start up to its camera's name: a message that starts so carries a topic
_TOPIC_HEADS = {kind: camera_topic(kind, "x")[:-len(_encoder.encode("x"))] for kind in _TOPIC_FIELDS}


def frame_parts(header: FrameHeader, payload: Buffer) -> list[Buffer]:
    """The two parts of a frame whose payload is already encoded (pixels or a packet)."""
    return [_encoder.encode(header), payload]


# -- a recorder's mark on an extractor's --publish -----------------------------------------------

# every message on --publish is a msgpack map (its first byte 0x80-0x8f, 0xde or 0xdf); 0xc1 is
# the one byte msgpack never uses, so no message can start with the marker
RECORDER_MARK = b"\xc1camwire-recorder/"


def recorder_topic(camera: str | None = None) -> bytes:
    """The marker a recorder subscribes to for ``camera`` (None: for every camera). The slash
    after the name keeps ``cam1``'s marker from matching ``cam10``'s."""
    return RECORDER_MARK + (camera.encode() + b"/" if camera is not None else b"")


def recorder_topics(cameras: Iterable[str] | None) -> set[bytes]:
    """A recorder's markers: one per camera it records, or one for all (None)."""
    return {recorder_topic()} if cameras is None else {recorder_topic(c) for c in cameras}
