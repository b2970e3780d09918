"""``[extractor]`` and ``camwire extractor``'s flags: cameras in, frames out (extractor/)."""

from __future__ import annotations

from typing import Annotated

from camwire.common.geometry import Polygon
from camwire.common.paths import camera_name
from camwire.common.settings.model import Group, opt, section
from camwire.common.settings.shared import DaemonOptions, FileOptions, SamplingOptions
from camwire.common.settings.values import mask_polygon
from camwire.common.units import duration, nonnegative, percent, positive
from camwire.common.wire import ENCODINGS, PIXEL_FORMATS

PASSTHROUGH = "passthrough"  # --publish-enc: the source's H.264/HEVC packets, not decoded
DETECT = ("motion", "always")  # a camera's frames to the pool while there is motion, or all
SHM_MODES = ("auto", "on", "off")
STALL_S = 5.0  # a live stream with no video this long is offline, and reconnected
FAILED_RETRY_S = 300.0  # a source that cannot work is tried again this rarely


class Extractor(Group):
    camera: Annotated[str | None, opt("camera name, used in every message and event (without --config); one per "
                                      "extractor", metavar="CAMERA", parse=camera_name,
                                      once="one extractor serves one camera from its flags; for several, use --config")] = None
    source: Annotated[list[str] | None, opt("file, rtsp://, http(s)://, HLS .m3u8; repeat for fallbacks in order of "
                                            "preference; ${VAR} is filled in from the environment, so a password "
                                            "need not show in ps", metavar="URL", repeat=True)] = None
    cameras: Annotated[str | None, opt("with --config: serve only these cameras (default: all)",
                                       metavar="NAMES")] = None
    push: Annotated[str | None, opt("ventilator frontend, e.g. tcp://host:5555", metavar="ADDR",
                                    required=True)] = None


class Motion(Group):
    """Motion is found in every decoded frame (extractor.motion); these tune it and its gate."""

    detect: Annotated[str, opt("motion: send sampled frames to the classifiers only while there is motion (and a "
                               "heartbeat); always: every sampled frame. A camera's detect in --config overrides it",
                               choices=DETECT, metavar="{motion,always}")] = "motion"
    motion_threshold: Annotated[float, opt("grey levels (of 255) a pixel must change by, beyond the whole frame's "
                                           "change", metavar="LEVELS")] = 25.0
    motion_min_area: Annotated[float, opt("smallest moving blob that counts, as a share of the frame (0.3%)",
                                          metavar="PCT", parse=percent)] = 0.003
    motion_off_delay: Annotated[float, opt("motion ends after this long without any (default 5s)",
                                           metavar="DURATION", parse=duration)] = 5.0
    motion_heartbeat: Annotated[float, opt("with --detect motion, a frame to the classifiers at least this often even "
                                           "with no motion, so a still object is still seen (default 10s)",
                                           metavar="DURATION", parse=duration)] = 10.0
    mask: Annotated[list[Polygon] | None, opt("without --config: a polygon motion ignores, as JSON: "
                                              "'[[0,0],[0.5,0],[0.5,0.2]]' (pixels, or fractions of the frame, as in "
                                              "the file's masks); repeat for more", metavar="POINTS",
                                              parse=mask_polygon, repeat=True)] = None


class Output(Group):
    publish: Annotated[str | None, opt("publish the camera's video here for the recorder (tcp://*:5559)",
                                       metavar="ADDR")] = None
    publish_enc: Annotated[str, opt("encoding on --publish; passthrough sends the source's H.264/HEVC packets "
                                    "undecoded", choices=(*ENCODINGS, PASSTHROUGH))] = "lz4"
    publish_wait: Annotated[float, opt("before reading, wait up to this long for a subscriber (a file recorded from "
                                       "its first frame)", metavar="DURATION", parse=duration)] = 0.0
    enc: Annotated[str, opt("encoding towards the ventilator", choices=ENCODINGS)] = "raw"
    open_timeout: Annotated[float, opt("give up opening a source after this long (then retried)",
                                       metavar="DURATION", parse=duration)] = 10.0
    read_timeout: Annotated[float, opt("a source that sends nothing this long is offline (then retried)",
                                       metavar="DURATION", parse=duration)] = 10.0
    detect_size: Annotated[int | None, opt("resize frames once, to this long side in pixels, before the detectors see "
                                           "them (a camera's detect_size in --config overrides it); boxes still come "
                                           "back in source pixels. Default: the source's size", metavar="PX",
                                           parse=positive(int))] = None
    pixel_format: Annotated[str, opt("the pixels the detectors get (a camera's pixel_format in --config overrides "
                                     "it): bgr, rgb (the SSD and YOLOv5/v8 take it), gray (hog, covered), yuv420 "
                                     "(half of bgr's bytes; a worker converts it for a detector that takes "
                                     "another, counted)", choices=PIXEL_FORMATS)] = "bgr"
    shm: Annotated[str, opt("frames to the ventilator through a shared-memory ring instead of the "
                            "socket: auto (when --push is ipc:// or loopback, i.e. this host), on, off",
                            choices=SHM_MODES)] = "auto"
    shm_slots: Annotated[int, opt("frames a camera's ring holds (a 1080p frame is 6.2 MB of /dev/shm, taken when "
                                  "the camera starts); when all are taken, a live frame goes by the socket, "
                                  "counted", metavar="N", parse=positive(int))] = 8
    source_slots: Annotated[int, opt("a camera whose frames are resized for detection (detect_size) and go through "
                                     "shared memory keeps its last N source frames (YUV 4:2:0: 3.1 MB at 1080p) "
                                     "in a ring of its own, so the sink makes the snapshots it keeps at the "
                                     "source's resolution; 0: snapshots at the detection size", metavar="N",
                                     parse=nonnegative(int))] = 16
    stall: Annotated[float, opt("a live stream with no video this long is offline, and reconnected (default 5s)",
                                metavar="DURATION", parse=duration)] = STALL_S
    failed_retry: Annotated[float, opt("how often a source that cannot work (no such file, 404, not a video) is "
                                       "tried again (default 5m)", metavar="DURATION", parse=duration)] = FAILED_RETRY_S
    poll: Annotated[float | None, opt("with --camera/--source: the source is a polled feed (a JPEG, MP4/TS clip or "
                                      "HLS playlist at an http(s) URL), fetched this often (extractor.poll)",
                                      metavar="DURATION", parse=duration)] = None


ExtractorSettings = section("ExtractorSettings", Extractor, SamplingOptions, Motion, Output, FileOptions,
                            DaemonOptions)
