"""A camera as the extractor knows it (CameraSpec): its name, sources, sampling, motion settings
and, for a polled feed, its poll interval. Shared by the camera thread (extractor.camera), the
poll loop (extractor.feed), the frame step (extractor.emitter) and the daemon."""

from __future__ import annotations

from dataclasses import dataclass, field

from camwire.common.geometry import Polygon
from camwire.extractor.motion import MotionSettings
from camwire.extractor.sampling import Sampling
from camwire.common.settings.extractor import STALL_S
from camwire.extractor.source import OPEN_TIMEOUT_S, READ_TIMEOUT_S, is_file


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """A camera as the extractor knows it: a name, its sources in order of preference, sampling."""

    name: str
    sources: tuple[str, ...]
    sampling: Sampling = field(default_factory=Sampling)
    realtime: bool = False
    loop: bool = False  # a file played again from its start when it ends (extractor.camera): never an Eos
    enc: str = "raw"
    open_timeout: float = OPEN_TIMEOUT_S
    read_timeout: float = READ_TIMEOUT_S
    stall: float = STALL_S  # a live stream with no video this long is offline, and reconnected
    publish: bool = True  # on --publish, when the process publishes at all (for the recorder and live views)
    recorded: bool = True  # the recorder takes it: --publish-wait waits for the recorder to want it
    detect: str = "motion"  # sampled frames to the classifiers only while there is motion, or "always"
    masks: tuple[Polygon, ...] = ()  # where motion is not looked for
    motion: MotionSettings = field(default_factory=MotionSettings)
    # a polled feed (extractor.feed): seconds between polls of ``sources[0]``; None: a stream
    poll: float | None = None
    placeholder: tuple[str, ...] = ()  # sha256 (hex) of the feed's "camera offline" images
    stale_after: int | None = None  # unchanged polls before ``stale``; None: extractor.feed's default
    detect_size: int | None = None  # the long side frames are resized to for the pool; None: the source's
    pixel_format: str = "bgr"  # the pixels' format for the pool (common.wire.PIXEL_FORMATS)
    shm_slots: int = 0  # frames to the pool through a shared-memory ring of this many (common.shm); 0: the socket
    source_slots: int = 0  # with shm_slots and detect_size: the source frames kept for snapshots (Emitter.keep_source)

    @property
    def files_only(self) -> bool:
        return all(is_file(url) for url in self.sources)
