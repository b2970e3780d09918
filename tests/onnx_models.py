"""Small ONNX models with known outputs, built here with the ``onnx`` helper API.

Each model's output is ``base + mean(image) * slope``: ``base`` and ``slope`` are constants of
the layout's shape, so a test knows exactly what the model will say, and frames of different
brightness get different answers (which shows when a batch mixes its frames up).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build_model(path: Path, base: np.ndarray, slope: np.ndarray | None = None, batch: int | None = None,
                size: tuple[int, int] | None = (640, 640), names: list[str] | None = None,
                imgsz: tuple[int, int] | None = None) -> Path:
    """``base``/``slope``: ``[D1, D2]`` for batched layouts (output ``[N, D1, D2]``) or ``[K, 7]``
    with ``batch=0`` for the batch-less end-to-end layout. ``size`` (W, H) None makes the input's
    spatial dims dynamic (the size then comes from ``imgsz`` metadata)."""
    slope = np.zeros_like(base) if slope is None else slope
    n = batch if batch else "batch"
    w, h = size if size else ("width", "height")
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [n, 3, h, w])
    nodes = [helper.make_node("ReduceMean", ["images"], ["mean4"], axes=[1, 2, 3], keepdims=1)]
    inits = [numpy_helper.from_array(base.astype(np.float32)[None] if batch != 0 else base.astype(np.float32), "base"),
             numpy_helper.from_array(slope.astype(np.float32)[None] if batch != 0 else slope.astype(np.float32), "slope")]
    if batch == 0:  # [K, 7]: one image's worth, no batch axis
        nodes.append(helper.make_node("ReduceMean", ["mean4"], ["mean"], axes=[0, 1, 2, 3], keepdims=0))
        out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(base.shape))
    else:
        inits.append(numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"))
        nodes.append(helper.make_node("Reshape", ["mean4", "shape3"], ["mean"]))
        out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [n, *base.shape])
    nodes += [helper.make_node("Mul", ["mean", "slope"], ["moved"]),
              helper.make_node("Add", ["base", "moved"], ["output0"])]
    graph = helper.make_graph(nodes, "yolo-standin", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {}
    if names is not None:
        meta["names"] = repr(dict(enumerate(names)))
    if imgsz is not None:
        meta["imgsz"] = repr(list(imgsz))
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def v8_rows(*anchors: tuple[float, float, float, float, int, float], classes: int, total: int = 8) -> np.ndarray:
    """``[4 + C, total]``: each anchor (cx, cy, w, h, class, score); the rest score 0."""
    out = np.zeros((4 + classes, total), np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(anchors):
        out[:4, i] = (cx, cy, w, h)
        out[4 + cls, i] = score
    return out
