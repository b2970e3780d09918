"""``onnx:PATH``: a YOLO-family or SSD detection model run in the worker with ONNX Runtime.

CUDA when onnxruntime-gpu and a GPU are there (the worker logs which provider it got), else CPU.
The family is read from the model's inputs and outputs:

- SSD (TensorFlow object-detection exports such as SSDLite-MobileNetV2 on COCO): a uint8
  ``[N, H, W, 3]`` input, per-class scores ``[N, A, C]`` and boxes ``[N, A, 1, 4]`` out
  (:mod:`classifier.detectors.ssd`); class names from the COCO-90 map, or ``--labels FILE``.
- YOLO (:mod:`classifier.detectors.yolo`): a float ``[N, 3, H, W]`` input; input size and class
  names from the model's metadata (Ultralytics writes ``imgsz`` and ``names``) or ``--labels FILE``
  (one name per line).

A batch of frames, from any cameras and of any sizes, is fitted to the model's input size and run
as one tensor when the model's batch dimension is dynamic; a model exported for a fixed batch gets
batches of exactly that size (the last one padded). Boxes come back in each frame's own pixels.
- YOLOX (the raw head: camwire's built-in YOLOX-Nano, ``onnx`` with no path): the same input,
  its frame in the top-left corner, BGR, 0-255; the COCO-80 names when the model has none.

Spec options: ``onnx`` (the built-in model, ``classifier/models/``), ``onnx:PATH`` or
``onnx:path=PATH,layout=v8|v5|nms|nms7|yolox|ssd`` (the layout is otherwise read from the model).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort
import structlog

from camwire.classifier.detectors import Detection, Frame, FrameResult, parse_options, ssd
from camwire.classifier.detectors.imaging import is_rgb
from camwire.classifier.detectors.ssd import COCO80
from camwire.classifier.detectors.yolo import LAYOUTS, Thresholds, decode, guess_layout, letterbox
from camwire.common.paths import name_list

DEFAULT_SIZE = 640
# camwire's own model (YOLOX-Nano, COCO, Apache-2.0: classifier/models/README.md): ``onnx`` with no path
BUILTIN_MODEL = Path(__file__).resolve().parent.parent / "models" / "yolox-nano-416.onnx"
Found = tuple[np.ndarray, np.ndarray, np.ndarray]  # one frame's boxes (source pixels), scores, class ids


def providers() -> list[str]:
    """CUDA first when this onnxruntime build has it (onnxruntime-gpu), CPU always as the fallback."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxDetector:
    def __init__(self, path: str, labels: list[str] | None = None, thresholds: Thresholds = Thresholds(),
                 layout: str | None = None, allowed: Sequence[str] | None = None, threads: int | None = None) -> None:
        if not Path(path).is_file():
            raise ValueError(f"onnx: no model file at {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:  # the worker's --threads (classifier.threads); ONNX Runtime's own default is every core
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        try:
            self.session = ort.InferenceSession(path, options, providers=providers())
        except Exception as exc:  # onnxruntime's own error types: a bad file is a bad option here
            raise ValueError(f"onnx: cannot load {path}: {exc}") from None
        self.provider = self.session.get_providers()[0]
        meta = self.session.get_modelmeta().custom_metadata_map
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.ssd_outputs = ssd.find_outputs(self.session.get_inputs(), self.session.get_outputs())
        if self.ssd_outputs:
            if layout not in (None, "ssd"):
                raise ValueError(f"onnx: {path} is an SSD model (uint8 NHWC in, scores and boxes out), not {layout!r}")
            self.layout = "ssd"
            self.size = ssd.input_size(inp.shape)
            self.labels = labels or ssd.coco_labels(self.ssd_outputs.classes)
        else:
            if layout == "ssd":
                raise ValueError(f"onnx: {path} is not an SSD model (uint8 [N, H, W, 3] in, [N, A, C] scores "
                                 "and [N, A, 1, 4] boxes out)")
            self.size = _input_size(inp.shape, meta)
            self.labels = labels or _names(meta)
            out_shape = tuple(self.session.get_outputs()[0].shape)
            self.layout = layout or guess_layout(out_shape, len(self.labels) if self.labels else None, self.size)
            if not self.labels and self.layout == "yolox" and out_shape[-1] == 5 + len(COCO80):
                self.labels = list(COCO80)  # YOLOX exports carry no names; 80 classes are COCO's
            if self.layout not in LAYOUTS:
                raise ValueError(f"onnx: layout {self.layout!r} is not one of {', '.join((*LAYOUTS, 'ssd'))}")
        if allowed:
            unknown = [a for a in allowed if a not in self.labels]
            if unknown:
                raise ValueError(f"onnx: --classes {unknown} are not among the model's labels")
            thresholds = Thresholds(thresholds.confidence, thresholds.iou, thresholds.max_detections,
                                    frozenset(self.labels.index(a) for a in allowed))
        self.thresholds = thresholds
        # taken as they come (first the model's own channel order: a camera sending it saves a flip)
        self.formats = ("bgr", "rgb", "gray") if self.layout == "yolox" else ("rgb", "bgr", "gray")
        self.name = f"onnx:{Path(path).name}"
        structlog.get_logger().info("onnx model loaded", model=path, provider=self.provider,
                                    input=f"{self.size[0]}x{self.size[1]}", batch=self.fixed_batch or "dynamic",
                                    layout=self.layout, classes=len(self.labels))

    def detect(self, frames: Sequence[Frame]) -> list[FrameResult]:
        images = [(image, is_rgb(header)) for header, image in frames]
        results: list[FrameResult] = []
        step = self.fixed_batch or len(images) or 1
        run = self._run_ssd if self.layout == "ssd" else self._run_yolo
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            found = run(chunk + [chunk[-1]] * (step - len(chunk)))  # pad a fixed-size batch
            results.extend(FrameResult([Detection(self._label(int(k)), float(v), tuple(map(float, box)))
                                        for box, v, k in zip(b, s, c)]) for b, s, c in found[: len(chunk)])
        return results

    def _run_yolo(self, images: list[tuple[np.ndarray, bool]]) -> list[Found]:
        tensors, fits = zip(*(letterbox(image, self.size, yolox=self.layout == "yolox", rgb=rgb) for image, rgb in images))
        output = self.session.run(None, {self.input_name: np.stack(tensors)})[0]
        decoded = decode(output, self.layout, self.thresholds, self.size)
        # an end-to-end model reports no rows for the last images when they have nothing in them
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        decoded += [empty] * (len(images) - len(decoded))
        return [(fit.to_source(b), s, c) for (b, s, c), fit in zip(decoded, fits)]

    def _run_ssd(self, images: list[tuple[np.ndarray, bool]]) -> list[Found]:
        batch = np.stack([ssd.prepare(image, self.size, rgb) for image, rgb in images])
        scores, boxes = self.session.run([self.ssd_outputs.scores, self.ssd_outputs.boxes], {self.input_name: batch})
        return ssd.decode(scores, boxes, [image.shape[1::-1] for image, _ in images], self.thresholds)

    def _label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)


def _input_size(shape: list[Any], meta: dict[str, str]) -> tuple[int, int]:
    """(W, H) from a static input shape, else the metadata's ``imgsz``, else 640x640."""
    if isinstance(shape[2], int) and isinstance(shape[3], int):
        return shape[3], shape[2]
    if "imgsz" in meta:
        h, w = ast.literal_eval(meta["imgsz"])
        return int(w), int(h)
    return DEFAULT_SIZE, DEFAULT_SIZE


def _names(meta: dict[str, str]) -> list[str]:
    """Ultralytics stores ``names`` as the text of a dict {0: 'person', ...}; literal_eval reads
    data only, never code."""
    if "names" not in meta:
        return []
    names = ast.literal_eval(meta["names"])
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    return [str(n) for n in names]


def read_labels(path: str) -> list[str]:
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line]


def build(arg: str, extra: dict[str, Any]) -> OnnxDetector:
    """``onnx`` (the built-in model), ``onnx:PATH`` or ``onnx:path=PATH,layout=...``, with
    thresholds from the command line."""
    options = {"path": arg} if "=" not in arg else parse_options(arg)
    if not options.get("path"):
        options["path"] = str(BUILTIN_MODEL)
    labels = read_labels(extra["labels"]) if extra.get("labels") else None
    allowed = name_list(extra.get("classes")) or None
    thresholds = Thresholds(confidence=float(extra.get("confidence") or 0.25), iou=float(extra.get("iou") or 0.45),
                            max_detections=int(extra.get("max_detections") or 300))
    return OnnxDetector(options["path"], labels, thresholds, options.get("layout"), allowed,
                        threads=extra.get("threads"))
