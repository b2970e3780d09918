"""Which decoded frames go on to the classifiers: pure decisions, made before colour conversion."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sampling:
    """How to thin a source: every N-th frame, a target rate, key frames only, or everything."""

    every: int = 1
    fps: float | None = None
    keyframes: bool = False

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError("--every must be at least 1")
        if self.fps is not None and self.fps <= 0:
            raise ValueError("--fps must be positive")
        if sum((self.every > 1, self.fps is not None, self.keyframes)) > 1:
            raise ValueError("choose one of --every, --fps, --keyframes")

    def describe(self) -> str:
        if self.keyframes:
            return "keyframes"
        if self.fps is not None:
            return f"fps={self.fps:g}"
        return f"every={self.every}"


class Sampler:
    """Decides per decoded frame whether it is sent to the classifiers.

    ``every``: frames 0, N, 2N, ... of this connection. ``fps``: the first frame at or after each
    tick of 1/F seconds of the frame's own timeline, so a 25 fps camera at ``--fps 5`` sends every
    fifth frame and a camera with jittery timestamps still sends about F a second.
    """

    def __init__(self, sampling: Sampling) -> None:
        self.sampling = sampling
        self._count = 0
        self._next_due: float | None = None

    def take(self, t: float) -> bool:
        """``t``: the frame's time in seconds (pts, or wall clock for a source without pts)."""
        index = self._count
        self._count += 1
        if self.sampling.fps is None:
            return index % self.sampling.every == 0
        period = 1.0 / self.sampling.fps
        if self._next_due is None or t + period < self._next_due:  # first frame, or time jumped back
            self._next_due = t
        if t + 1e-9 >= self._next_due:
            # skip whole periods when the source stalled, instead of bursting to catch up
            missed = int((t - self._next_due) / period)
            self._next_due += (missed + 1) * period
            return True
        return False
