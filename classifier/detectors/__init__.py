"""Detector plugins behind one small interface: frames in, detections out.

A detector is any object with ``name`` and ``detect(frames) -> list[FrameResult]``, one result per
frame in order, and may say which pixel formats it takes (``formats``, first the one it prefers;
BGR alone when it says none): :func:`detect` hands it each frame in one of them, converted where
the camera sends another (common.pixels.convert; the frame's header then names the format given).
``make_detector`` builds one from a spec string:

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


DEFAULT_FORMATS = ("bgr",)  # what a detector that names no formats takes


class Combined:
    """Several detectors on the same frames; detections and flags are merged per frame."""

    def __init__(self, parts: list[Detector]) -> None:
        self.parts = parts
        self.name = "+".join(p.name for p in parts)

    def detect(self, frames: Sequence[Frame]) -> list[FrameResult]:
        return detect(self, frames)


def formats_of(detector: Detector) -> tuple[str, ...]:
    return tuple(getattr(detector, "formats", DEFAULT_FORMATS)) or DEFAULT_FORMATS


def target_format(src: str, formats: tuple[str, ...]) -> str:
    """The format a frame in ``src`` is given to a detector taking ``formats``: its own when taken,
    else the one the detector prefers (the first; YUV 4:2:0 to grey is its Y plane, no conversion)."""
    return src if src in formats else formats[0]


def detect(detector: Detector, frames: Sequence[Frame],
           converted: Callable[[str, str], None] | None = None) -> list[FrameResult]:
    """``detector`` (or each part of a Combined, merged per frame) over ``frames``, each frame in a
    format the part takes: converted once per frame and format whatever the number of parts, and
    each conversion told to ``converted(src, dst)`` (the worker counts them)."""
    parts = detector.parts if isinstance(detector, Combined) else [detector]
    cache: dict[tuple[int, str], Frame] = {}

    def given(i: int, frame: Frame, formats: tuple[str, ...]) -> Frame:
        header, image = frame
        if header is None:  # a bare frame (tests, benches): BGR, as it always was
            return frame
        dst = target_format(header.format, formats)
        if dst == header.format:
            return frame
        if (i, dst) not in cache:
            from camwire.common.pixels import convert  # OpenCV is loaded only where a frame is converted

            image = convert(image, header.format, dst, header.matrix)
            channels = 3 if dst in ("bgr", "rgb") else 1
            cache[i, dst] = (msgspec.structs.replace(header, pix=dst, channels=channels), image)
            if converted is not None:
                converted(header.format, dst)
        return cache[i, dst]

    if len(parts) == 1:
        formats = formats_of(parts[0])
        return parts[0].detect([given(i, f, formats) for i, f in enumerate(frames)])
    merged = [FrameResult() for _ in frames]
    for part in parts:
        formats = formats_of(part)
        for out, res in zip(merged, part.detect([given(i, f, formats) for i, f in enumerate(frames)]), strict=True):
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
