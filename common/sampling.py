"""How a camera's frames are thinned for the classifiers: the value both the config and the
extractor read (the decisions themselves are extractor.sampling's Sampler)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sampling:
    """Every N-th frame, a target rate, key frames only, or (the default) everything."""

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
