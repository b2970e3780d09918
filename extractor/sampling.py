"""Which decoded frames go on to the classifiers: pure decisions, made before colour conversion."""

from __future__ import annotations

from camwire.common.sampling import Sampling

__all__ = ["Sampler", "Sampling"]


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
