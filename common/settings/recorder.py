"""``[recorder]`` and ``camwire recorder``'s flags: video on disk (recorder/)."""

from __future__ import annotations

from typing import Annotated

from camwire.common.settings.model import Group, opt, section
from camwire.common.settings.shared import DaemonOptions, FileOptions, RecordingOptions


class Recorder(Group):
    subscribe: Annotated[list[str] | None, opt("an extractor's --publish address; repeat for more", metavar="ADDR",
                                               repeat=True, required=True)] = None
    dir: Annotated[str | None, opt("where the ring, its index and kept clips live", metavar="DIR",
                                   required=True)] = None
    events: Annotated[list[str] | None, opt("the sink's --publish address: keep the files around events; repeat "
                                            "for several sinks (each owning its cameras)", metavar="ADDR",
                                            repeat=True)] = None
    sink: Annotated[list[str] | None, opt("the sink's --bind address ([sockets] results): where recording_paused/"
                                          "recording_resumed events go, and with [upload] what = [\"clips\"] the "
                                          "uploaded events of kept clips, each camera's to the sink that owns it; "
                                          "repeat for several sinks, listed as the workers list them",
                                          metavar="ADDR", repeat=True)] = None
    exit_when_ended: Annotated[str | None, opt("comma-separated cameras: exit once each has ended (files) and its "
                                               "last segment is closed", metavar="CAMERAS")] = None


RecorderSettings = section("RecorderSettings", Recorder, RecordingOptions, FileOptions, DaemonOptions)
