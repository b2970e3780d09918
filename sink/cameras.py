"""The sink's one live record of each camera: :class:`LiveCamera`, kept in :class:`LiveCameras`.

One dict, keyed by camera name, shared by sink.events, sink.camera_status, sink.motion_state and
sink.recording_state: each reads the record and updates its own fields, and keeps its own
bookkeeping as a part of it (:meth:`LiveCamera.part`). So the camera's state (common.camera_state)
and why, its covered lens, its motion and the recorder's pause are in one place, which status.db
shows as it is, and the sink lets a camera go with one ``pop``. Nothing here goes over the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from camwire.common import camera_state
from camwire.common.camera_state import State

T = TypeVar("T")


@dataclass(slots=True)
class LiveCamera:
    name: str
    # what its extractor last said (wire.Status; ``ended`` with its Eos), and why: sink.camera_status
    reported: State = "connecting"
    reported_reason: str | None = None
    silent: bool = False  # sink.events: no word from its extractor for silent_after_s; the next word clears it
    degraded: str | None = None  # sink.camera_status: the error every result of the last window carried
    covered: bool = False  # sink.events: the lens covered, as the events told it (debounced)
    motion: bool = False  # sink.motion_state: as the motion events told it
    recording_paused: bool = False  # sink.recording_state: the recorder's pause, as told
    parts: dict[type, Any] = field(default_factory=dict)  # each module's own bookkeeping, by its type

    @property
    def state(self) -> State:
        """The state shown (status.db, ``camwire status``, the console): common.camera_state.shown."""
        return camera_state.shown(self.reported, self.reported_reason, self.silent, self.degraded)[0]

    @property
    def reason(self) -> str | None:
        return camera_state.shown(self.reported, self.reported_reason, self.silent, self.degraded)[1]

    def move(self, cause: str, reason: str | None = None) -> None:
        """What the extractor said, moved by the sink's own transition ``cause`` (camera_state.AFTER);
        ``reason`` is the new state's."""
        moved = camera_state.AFTER[cause].get(self.reported)
        if moved is not None:
            self.reported, self.reported_reason = moved, reason

    def part(self, kind: type[T]) -> T | None:
        """The part of type ``kind`` a module keeps here, or None before it met the camera."""
        return self.parts.get(kind)

    def attach(self, part: T) -> T:
        self.parts[type(part)] = part
        return part


class LiveCameras(dict[str, LiveCamera]):
    """Every camera the sink holds now, by name. The sink's admission (common.admission) bounds them."""

    def at(self, name: str) -> LiveCamera:
        """The camera's record, made when first met."""
        live = self.get(name)
        if live is None:
            live = self[name] = LiveCamera(name)
        return live
