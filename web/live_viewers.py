"""What a live viewer asks for and is sent (web.live, web.live_socket): its request of a camera
(:class:`Want`, with its bounds), the viewer itself (:class:`Viewer`: what it watches, what it got,
how to wake its sender), and the pacing that says whether a chosen frame is due to it (:func:`is_due`).

Pacing (``slot``, ``is_due``): capture time is cut into slots of 1/fps seconds, the same grid for every
viewer (``floor(ts * fps)``, ``ts`` the chosen frame's capture time). A viewer is sent a camera's
chosen frame when its slot is not that of the frame it last got (or it is that same frame, now with
its boxes): at most one frame a slot, so ``fps`` frames a second of capture time, and viewers at the
same fps and width are sent the same frames and share their JPEGs (a viewer's own clock would pick
different frames for each). A viewer still busy sending takes the newest chosen frame when it is free.
"""

from __future__ import annotations

import asyncio
from typing import Iterable, NamedTuple, Sequence

from camwire.web.live_ring import Choice

MIN_WIDTH, MAX_WIDTH, DEFAULT_WIDTH = 64, 1920, 640
MIN_FPS, MAX_FPS, DEFAULT_FPS = 0.2, 30.0, 5.0
MAX_WATCHED = 64  # cameras one viewer may watch at once


class Want(NamedTuple):
    """What a viewer asked of one camera."""

    width: int
    fps: float


class Got(NamedTuple):
    """What a viewer was last sent of a camera (or tried: a frame that did not decode)."""

    mark: tuple[int, bool]  # Choice.mark
    ts_ns: int  # its capture time: the slot it filled


class Viewer:
    """One WebSocket client: what it watches, what it was last sent, and how to wake its sender
    (on its own loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wake = asyncio.Event()
        self.watch: dict[str, Want] = {}  # replaced whole, never changed in place
        self.got: dict[str, Got] = {}  # camera -> last sent; its sender's to write
        # camera -> the choice it was woken for (None: choose now); its loop's alone
        self.look_at: dict[str, Choice | None] = {}

    def look(self, cameras: Iterable[str], choice: Choice | None = None) -> None:
        """On its loop: have its sender look at ``cameras`` again, and show ``choice`` if due."""
        for camera in cameras:
            self.look_at[camera] = choice
        self.wake.set()


def slot(ts_ns: int, fps: float) -> int:
    """Which 1/fps-second slot of capture time ``ts_ns`` falls in: ``floor(ts * fps)``, in integers
    (fps to the millihertz) so that every viewer and the hub cut the same grid."""
    return ts_ns * round(fps * 1000) // 1_000_000_000_000


def is_due(choice: Choice, got: Got | None, fps: float) -> bool:
    """Whether a viewer at ``fps`` last sent ``got`` is sent ``choice``: a newer frame in another slot
    than the last one's, or that same frame now with its boxes; never an older one."""
    if got is None:
        return True
    if choice.mark <= got.mark:
        return False
    return choice.frame.number == got.mark[0] or slot(choice.frame.header.ts_ns, fps) != slot(got.ts_ns, fps)


def look(viewers: Sequence[Viewer], camera: str, choice: Choice) -> None:
    """On the viewers' loop (the hub calls it there): each of ``viewers`` looks at ``camera`` again."""
    for viewer in viewers:
        viewer.look((camera,), choice)

