"""``[ventilator]`` and ``[classifier]``: the pool (classifier/)."""

from __future__ import annotations

from typing import Annotated

from camwire.common.admission import DEFAULT_IDLE_S, DEFAULT_POOL
from camwire.common.settings.model import Group, opt, section
from camwire.common.settings.shared import DaemonOptions, DetectorOptions, FileOptions
from camwire.common.settings import values
from camwire.common.units import duration, positive, size
from camwire.common.wire import DEFAULT_MAX_FRAME_BYTES


class Ventilator(Group):
    frontend: Annotated[str | None, opt("bind: extractors push here", metavar="ADDR", required=True)] = None
    backend: Annotated[str | None, opt("bind: workers connect here", metavar="ADDR", required=True)] = None
    heartbeat_timeout: Annotated[float, opt("forget a worker silent this long (its in-flight frames are counted "
                                            "lost)", metavar="DURATION", parse=positive(duration))] = 5.0
    frame_deadline: Annotated[float, opt("a frame a worker holds longer than this is counted lost and its credit "
                                         "taken back", metavar="DURATION", parse=positive(duration))] = 30.0
    max_backlog: Annotated[int, opt("frames waiting before the frontend is paused (only files queue)",
                                    metavar="N")] = 64
    max_cameras: Annotated[int, opt(f"cameras not in --config remembered at once (default {DEFAULT_POOL}); a new one "
                                    "past these is counted and dropped. The file's cameras always have a place",
                                    metavar="N")] = DEFAULT_POOL
    camera_idle: Annotated[float, opt(f"forget a camera not in --config after this long without a message (default "
                                      f"{DEFAULT_IDLE_S:g}s), making room for another", metavar="DURATION",
                                      parse=positive(duration))] = DEFAULT_IDLE_S
    max_frame_bytes: Annotated[int, opt("largest frame taken (its pixels once decoded); larger ones are counted and "
                                        "dropped", metavar="SIZE", parse=positive(size))] = DEFAULT_MAX_FRAME_BYTES
    route: Annotated[list[tuple[str, str]] | None, opt(
        "send CAMERA's frames only to workers serving DETECTOR (their --serves, else their --detector spec); repeat "
        "for more cameras, or for one camera that wants two detectors. The file's [cameras.NAME] detector does the "
        "same", metavar="CAMERA=DETECTOR", parse=values.route, repeat=True)] = None


class Classifier(Group):
    connect: Annotated[list[str] | None, opt(
        "the ventilator's backend; repeat for more: a link to each, its own credits, and each frame's done back to "
        "the ventilator that sent it", metavar="ADDR", repeat=True, required=True)] = None
    sink: Annotated[list[str] | None, opt(
        "the sink's bind address; repeat for more: each camera's results go to one of them, chosen by its name "
        "(every worker must list the same sinks, written alike)", metavar="ADDR", repeat=True,
        required=True)] = None
    name: Annotated[str | None, opt("worker name in logs and stats (default: host-pid, or host-classifier-N)",
                                    metavar="NAME")] = None
    serves: Annotated[str | None, opt("the detector name this worker serves: cameras whose detector is NAME get "
                                      "their frames from it (default: the --detector spec, an onnx model by its file name: "
                                      "onnx:yolov8n.onnx)",
                                      metavar="NAME")] = None
    instance: Annotated[int | None, opt("systemd's %i: names the worker HOST-classifier-N and serves metrics on "
                                        "--metrics-port + N (and --serve on its port + N), so one config serves a pool",
                                        metavar="N")] = None
    max_frame_bytes: Annotated[int, opt("largest frame decoded (its pixels); a larger one gets a result with an "
                                        "error", metavar="SIZE", parse=positive(size))] = DEFAULT_MAX_FRAME_BYTES


VentilatorSettings = section("VentilatorSettings", Ventilator, FileOptions, DaemonOptions)
ClassifierSettings = section("ClassifierSettings", Classifier, DetectorOptions, FileOptions, DaemonOptions)
