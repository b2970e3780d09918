"""``[run]`` and ``camwire run``'s flags: every daemon on one host (camwire/supervisor.py,
camwire/plan.py). Its groups are the daemons' own (sampling, detector options, recording),
handed on to the children unchanged."""

from __future__ import annotations

from typing import Annotated

from camwire.common.settings.extractor import PASSTHROUGH
from camwire.common.settings.model import Group, opt, section
from camwire.common.settings.shared import DetectorOptions, FileOptions, RecordingOptions, SamplingOptions
from camwire.common.settings.values import camera_url
from camwire.common.units import duration


class Run(Group):
    camera: Annotated[list[tuple[str, list[str]]] | None, opt(
        "a camera (without --config); repeat for more; URL may be 'primary|fallback'", metavar="NAME=URL",
        parse=camera_url, repeat=True)] = None
    workers: Annotated[int, opt("classifier processes", metavar="N")] = 2
    events: Annotated[str, opt("see camwire sink --events", metavar="PATH")] = "events.jsonl"
    data_dir: Annotated[str | None, opt("snapshots and status.db go here", metavar="DIR")] = None
    once: Annotated[bool, opt("every source a file: exit when each has been processed (1 if any camera "
                              "failed)")] = False
    cooldown: Annotated[float | None, opt("does nothing (nor does the sink's); accepted, with a warning, for one more "
                                          "release", metavar="S", parse=duration, deprecated=True)] = None
    rules: Annotated[str | None, opt("see camwire sink --rules", metavar="FILE")] = None
    record: Annotated[str | None, opt("record every camera into a ring here and keep clips of events",
                                      metavar="DIR", group="recording")] = None
    record_enc: Annotated[str, opt("what the extractors publish to the recorder: the source's packets, or LZ4 "
                                   "frames to re-encode", choices=(PASSTHROUGH, "lz4"),
                                   group="recording")] = PASSTHROUGH
    web: Annotated[int | None, opt("also run the web console on http://127.0.0.1:PORT/ (with --config: when the "
                                   "file has a [web] section, on its port)", metavar="PORT")] = None


RunSettings = section("RunSettings", Run, DetectorOptions, SamplingOptions, RecordingOptions, FileOptions,
                      optional=("detector",))
