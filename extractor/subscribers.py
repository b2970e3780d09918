"""Who subscribes to an extractor's ``--publish`` (its XPUB), and how a recorder says it is one.

A recorder takes everything (an empty topic) or, with a file, each recorded camera's frames,
status and end; the web console one camera at a time, only while someone watches it
(common.wire.camera_topic). Both kinds of subscription look alike to the XPUB, so a recorder
also subscribes to a marker per camera (common.wire.recorder_topic) that no message ever starts
with: ``--publish-wait`` waits for those markers, never for a viewer in a browser.
"""

from __future__ import annotations

import functools

import zmq

from camwire.common import wire
from camwire.common.wire import RECORDER_MARK, recorder_topic

class Subscribers:
    """Who subscribes to ``--publish`` now, as the XPUB's (un)subscription messages say. Changed
    by the main thread, read by the camera threads: the set is replaced whole, never changed in place."""

    def __init__(self) -> None:
        self.topics: frozenset[bytes] = frozenset()

    def on_message(self, parts: list[zmq.Frame]) -> None:
        msg = parts[0].bytes
        if msg[:1] == b"\x01":
            self.topics = self.topics | {msg[1:]}
        elif msg[:1] == b"\x00":  # the last subscriber of the topic left (XPUB passes on only that one)
            self.topics = self.topics - {msg[1:]}

    def wants(self, camera: str) -> bool:
        """Anyone, a recorder or a viewer, takes this camera's frames: they are worth publishing."""
        topics = self.topics
        if b"" in topics:
            return True
        mine = _frame_topic(camera)
        return any(mine.startswith(t) for t in topics)

    def recorded(self, camera: str) -> bool:
        """A recorder has said it takes this camera (its marker): what ``--publish-wait`` waits for."""
        mark = recorder_topic(camera)
        return any(t.startswith(RECORDER_MARK) and mark.startswith(t) for t in self.topics)


@functools.cache
def _frame_topic(camera: str) -> bytes:
    return wire.camera_topic(wire.FrameHeader, camera)
