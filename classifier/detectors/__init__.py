"""Detector plugins behind one small interface: frames in, detections out.

A detector is any object with ``name`` and ``detect(frames) -> list[FrameResult]``, one result per
frame in order. ``make_detector`` builds one from a spec string:

    hog | covered[:frames=N] | onnx:PATH | roboflow:MODEL_ID

Specs joined with ``+`` run side by side on the same frames (``onnx:yolo.onnx+covered``).
Motion is not a detector here: the extractor finds it in every frame (extractor.motion). Options after
``:`` are ``key=value`` pairs separated by commas for the built-in detectors.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import msgspec
import numpy as np

from camwire.common import wire
from camwire.common.wire import FrameHeader

Frame = tuple[FrameHeader, np.ndarray]


@dataclass(slots=True)
class Detection:
    """One thing found in a frame; ``box`` is ``[x1, y1, x2, y2]`` in source pixels."""

    label: str
    confidence: float
    box: tuple[float, float, float, float]

    def to_map(self) -> dict[str, Any]:
        confidence = float(self.confidence)
        if math.isfinite(confidence):  # a float32 score a hair past 1 is 1; a NaN stays NaN and is refused
            confidence = min(1.0, max(0.0, confidence))
        return {"label": self.label, "confidence": round(confidence, 4), "box": [round(float(v), 1) for v in self.box]}


@dataclass(slots=True)
class FrameResult:
    """What a detector says of one frame: detections, and flags such as ``covered``."""

    detections: list[Detection] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> tuple[list[wire.Detection], wire.Flags]:
        """The result's wire form, validated as the sink will decode it (a NaN box, a confidence
        past 1, an unknown scene raise ``msgspec.ValidationError``: the caller reports it)."""
        detections = msgspec.convert([d.to_map() for d in self.detections], list[wire.Detection])
        return detections, msgspec.convert(self.flags, wire.Flags)


class Detector(Protocol):
    name: str

    def detect(self, frames: Sequence[Frame]) -> list[FrameResult]: ...


class Combined:
    """Several detectors on the same frames; detections and flags are merged per frame."""

    def __init__(self, parts: list[Detector]) -> None:
        self.parts = parts
        self.name = "+".join(p.name for p in parts)

    def detect(self, frames: Sequence[Frame]) -> list[FrameResult]:
        merged = [FrameResult() for _ in frames]
        for part in self.parts:
            for out, res in zip(merged, part.detect(frames), strict=True):
                out.detections.extend(res.detections)
                out.flags.update(res.flags)
        return merged


def parse_options(text: str) -> dict[str, str]:
    """``"frames=5,threshold=30"`` -> ``{"frames": "5", "threshold": "30"}``."""
    options: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"detector option {item!r} is not key=value")
        options[key.strip()] = value.strip()
    return options


def _builtin(factory: Callable[..., Detector]) -> Callable[[str, dict[str, Any]], Detector]:
    def build(arg: str, _extra: dict[str, Any]) -> Detector:
        options = parse_options(arg)
        try:
            return factory(**{k: float(v) for k, v in options.items()})
        except TypeError as exc:
            raise ValueError(f"{factory.__name__}: {exc}") from None
    return build


NAMES = ("hog", "covered", "onnx", "roboflow")  # what a spec may name; _registry builds them


def _registry() -> dict[str, Callable[[str, dict[str, Any]], Detector]]:
    from camwire.classifier.detectors.covered import CoveredDetector
    from camwire.classifier.detectors.hog import HogPeopleDetector

    return {"hog": _builtin(HogPeopleDetector),
            "covered": _builtin(CoveredDetector), "onnx": _lazy("onnx"), "roboflow": _lazy("roboflow")}


def _lazy(module: str) -> Callable[[str, dict[str, Any]], Detector]:
    """A model runtime is imported only by the worker that uses it (onnxruntime, inference-sdk)."""
    def build(arg: str, extra: dict[str, Any]) -> Detector:
        return importlib.import_module(f"camwire.classifier.detectors.{module}").build(arg, extra)
    return build


def make_detector(spec: str, extra: dict[str, Any] | None = None) -> Detector:
    """Build the detector a spec names; ``extra`` carries command-line options (thresholds, URLs)."""
    registry = _registry()
    parts: list[Detector] = []
    for item in spec.split("+"):
        name, _, arg = item.strip().partition(":")
        if name not in registry:
            raise ValueError(f"unknown detector {name!r}; known: {', '.join(sorted(registry))}")
        parts.append(registry[name](arg, extra or {}))
    return parts[0] if len(parts) == 1 else Combined(parts)
