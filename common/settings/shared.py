"""Settings more than one section has: the file and umask of every configured command, the
metrics and CURVE keys of every daemon, and the groups ``camwire run`` hands its children
(sampling to the extractors, detector options to the workers, recording to the recorder)."""

from __future__ import annotations

from typing import Annotated

from camwire.common.settings.model import Group, opt
from camwire.common.settings import values
from camwire.common.settings.values import DEFAULT_UMASK, port
from camwire.common.units import duration, percent, positive, size
from camwire.common.wire import DEFAULT_MAX_FRAME_BYTES, EVENT_TYPES

DAY_S = 86400.0


class FileOptions(Group):
    """What every command that reads camwire.toml takes."""

    config_file: Annotated[str | None, opt("camwire.toml: cameras, sockets and this daemon's settings; flags given "
                                           "here override it", metavar="FILE", flag="--config", file=False)] = None
    umask: Annotated[int, opt("files camwire writes (recordings, snapshots, events, databases) are 0640 and folders "
                              "0750 with the default; 0022 makes them readable by every user", metavar="MODE",
                              parse=values.umask, shown="0027")] = DEFAULT_UMASK
    stats: Annotated[str | None, opt("write counters as JSON here at exit", metavar="PATH")] = None


class DaemonOptions(Group):
    """What every daemon takes: its metrics and its CURVE keys ([security] fills the keys)."""

    metrics_port: Annotated[int | None, opt("serve Prometheus metrics on http://ADDR:PORT/metrics (ADDR: "
                                            "--metrics-bind)", metavar="PORT", parse=port)] = None
    metrics_bind: Annotated[str, opt("the address the metrics listen on: this host only by default; 0.0.0.0 (or "
                                     "one interface's address) for a Prometheus on another host",
                                     metavar="ADDR")] = "127.0.0.1"
    serve: Annotated[str | None, opt("answer other hosts here (the console, camwire status, camwire reload): "
                                     "hello, reload, and what this daemon keeps (the sink's events, status and "
                                     "snapshots; a recorder's recordings); CURVE on tcp:// like every link",
                                     metavar="ADDR")] = None
    curve_key: Annotated[str | None, opt("this daemon's secret key (camwire keygen; mode 0600): encrypt and "
                                         "authenticate every tcp:// link ([security] key)", metavar="FILE")] = None
    curve_clients: Annotated[str | None, opt("public keys (*.key) of the clients allowed to connect to what this "
                                             "daemon binds; read again on SIGHUP ([security] clients)",
                                             metavar="DIR")] = None
    curve_servers: Annotated[str | None, opt("public keys of the daemons this one connects to: HOST.key for "
                                             "tcp://HOST:PORT, else ventilator.key, sink.key, extractor.key "
                                             "([security] servers)", metavar="DIR")] = None


class SamplingOptions(Group):
    """Which decoded frames an extractor sends on (common.sampling)."""

    every: Annotated[int, opt("send every N-th frame", metavar="N", exclusive="sampling")] = 1
    fps: Annotated[float | None, opt("send about F frames a second", metavar="F", exclusive="sampling")] = None
    keyframes: Annotated[bool, opt("decode and send key frames only", exclusive="sampling")] = False
    realtime: Annotated[bool, opt("pace a file at its native rate, as a camera would be")] = False


class DetectorOptions(Group):
    """A worker's detector and its options: what ``camwire run`` hands its workers unchanged."""

    detector: Annotated[str | None, opt("hog | covered[:frames=N] | onnx:PATH | roboflow:MODEL_ID; join with + "
                                        "(motion is found by the extractor, in every frame)", metavar="SPEC",
                                        required=True)] = None
    batch: Annotated[int, opt("frames per detector call (the worker's credits)", metavar="N")] = 1
    batch_wait: Annotated[float, opt("longest wait for a batch to fill once its first frame is in",
                                     metavar="DURATION", parse=duration)] = 0.02
    confidence: Annotated[float, opt("onnx/roboflow: lowest confidence kept", metavar="SHARE")] = 0.25
    iou: Annotated[float, opt("onnx/roboflow: NMS overlap threshold", metavar="SHARE")] = 0.45
    classes: Annotated[str | None, opt("onnx/roboflow: comma-separated labels to keep (default: all)",
                                       metavar="LABELS")] = None
    labels: Annotated[str | None, opt("onnx: a file of class names, one per line (default: the model's or, for an "
                                      "SSD, COCO's)", metavar="FILE")] = None
    api_url: Annotated[str, opt("roboflow: the Inference server", metavar="URL")] = "http://localhost:9001"
    infer_timeout: Annotated[float, opt("roboflow: how long before a call to the server counts as failed",
                                        metavar="DURATION", parse=duration)] = 10.0
    concurrency: Annotated[int, opt("roboflow: requests kept in flight per worker", metavar="N")] = 4
    threads: Annotated[int | None, opt("threads each of this worker's libraries may use (ONNX Runtime, OpenCV, "
                                       "numpy's BLAS); default: every core, or under camwire run the host's cores "
                                       "shared among the workers it starts", metavar="N",
                                       parse=positive(int))] = None
    max_window: Annotated[int, opt("most frames a worker asks for at once: its credit window grows from --batch "
                                   "to cover the round trip to the ventilator (measured), up to this",
                                   metavar="N", parse=positive(int))] = 32


# the recorder's defaults (recorder.ring, recorder.retention, recorder.keep read them from here)
RETAIN_S = 7 * DAY_S
KEEP_RETAIN_S = 30 * DAY_S
MIN_FREE = 0.05
MAX_SKEW_S = DAY_S
MAX_CAMERAS = 256
MAX_SEGMENT_BYTES = 1 << 30  # 60 s of an 8K camera at 130 Mbit/s; a file is cut past this
ENCODE_MEMORY = 3 << 29
KEEP_TYPES = ("object", "camera_covered")
assert set(KEEP_TYPES) <= set(EVENT_TYPES)


class RecordingOptions(Group):
    """How the recorder records and keeps: ``camwire recorder``'s and ``camwire run --record``'s."""

    segment: Annotated[float, opt("video per file (60s)", metavar="DURATION", parse=positive(duration),
                                  group="recording")] = 60.0
    retain: Annotated[float, opt("delete ring files older than this", metavar="DURATION", parse=positive(duration),
                                 group="recording", shown="7d")] = RETAIN_S
    max_bytes: Annotated[int | None, opt("keep the ring under this size (500M, 200G)", metavar="SIZE",
                                         parse=positive(size), group="recording")] = None
    min_free: Annotated[float, opt("keep this share of the volume free, deleting the oldest ring files (never kept "
                                   "clips); when they are not enough, recording pauses until space returns",
                                   metavar="PERCENT", parse=percent, group="recording", shown="5%")] = MIN_FREE
    keep_retain: Annotated[float, opt("delete kept clips older than this", metavar="DURATION",
                                      parse=positive(duration), group="recording", shown="30d")] = KEEP_RETAIN_S
    keep_max_bytes: Annotated[int | None, opt("keep all kept clips under this size", metavar="SIZE",
                                              parse=positive(size), group="recording")] = None
    max_cameras: Annotated[int, opt("record at most this many cameras; frames of more are counted, not recorded",
                                    metavar="N", parse=positive(int), group="recording")] = MAX_CAMERAS
    max_clock_skew: Annotated[float, opt("a capture time further than this from the wall clock is counted and "
                                         "replaced by it", metavar="DURATION", parse=positive(duration),
                                         group="recording")] = MAX_SKEW_S
    pre: Annotated[float, opt("keep this much before an event", metavar="DURATION", parse=duration,
                              group="recording")] = 10.0
    post: Annotated[float, opt("keep this much after an event", metavar="DURATION", parse=duration,
                               group="recording")] = 10.0
    keep_types: Annotated[str, opt("comma-separated event types that keep a clip (default: object,camera_covered; "
                                   "an object keeps one clip)", metavar="TYPES", group="recording")] = \
        ",".join(KEEP_TYPES)
    max_segment_bytes: Annotated[int, opt("cut a file at this size even before --segment has passed",
                                          metavar="SIZE", parse=positive(size), group="recording",
                                          shown="1G")] = MAX_SEGMENT_BYTES
    max_frame_bytes: Annotated[int, opt("refuse a frame whose pixels or payload are larger, before decompressing it "
                                        "(default: 8K RGBA)", metavar="SIZE", parse=positive(size),
                                        group="recording")] = DEFAULT_MAX_FRAME_BYTES
    encode_memory: Annotated[int, opt("about how much memory the encoders of LZ4/raw/JPEG cameras may hold at once, "
                                      "all together; a camera past it is counted, not recorded", metavar="SIZE",
                                      parse=positive(size), group="recording", shown="1.5G")] = ENCODE_MEMORY
    preset: Annotated[str, opt("x264 preset for frames that must be encoded", metavar="PRESET",
                               group="recording")] = "veryfast"
    crf: Annotated[int, opt("x264 quality for frames that must be encoded", metavar="N", group="recording")] = 23
