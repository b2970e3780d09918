"""Frames per second of the ONNX detector (resize, ONNX Runtime, decode + NMS) at batch 1, 4
and 16, per model, side by side in one run.

- ``yolo-like``: built in this script, since no YOLO weights can be downloaded here: a YOLO-shaped
  convolutional network with random weights (640x640 input, a stride-2 stem and five stride-2
  stages to 512 channels, a v8-style head giving ``[N, 84, 8400]``: 80 classes over the P3/P4/P5
  grids). Its compute (about 11 GFLOPs per image) is of the order of YOLOv8n/s, and the output is
  the real layout, so the detector's post-processing runs on real sizes. Random 1280x720 frames.
- ``coco-ssd-mobilenetv2``: the real pretrained SSDLite-MobileNetV2 (COCO) from
  ``../shared/models/``, when it is there, on frames of ``../shared/media/people-walking.mp4``
  (768x576, real detections) when that is there, else the same random frames.

Run: ``.venv/bin/python bench/models.py [--seconds S] [--out FILE]``; on a GPU machine with
onnxruntime-gpu the detector uses CUDA (the provider is printed).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SSD_MODEL = ROOT.parent / "shared" / "models" / "coco-ssd-mobilenetv2.onnx"
SSD_CLIP = ROOT.parent / "shared" / "media" / "people-walking.mp4"

from camwire.classifier.detectors.onnx import OnnxDetector  # noqa: E402
from camwire.common.wire import FrameHeader  # noqa: E402

CLASSES = 80


def build_yolo_like(path: Path) -> Path:
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def conv(x: str, cin: int, cout: int, k: int, stride: int, name: str, act: bool = True) -> str:
        w = (rng.standard_normal((cout, cin, k, k)) * (2 / (cin * k * k)) ** 0.5).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}.b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.c"], kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[k // 2] * 4))
        if not act:
            return f"{name}.c"
        nodes.append(helper.make_node("Relu", [f"{name}.c"], [f"{name}.o"]))
        return f"{name}.o"

    x = conv("images", 3, 32, 3, 2, "stem")          # 320
    x = conv(x, 32, 64, 3, 2, "s1")                   # 160
    x = conv(x, 64, 64, 3, 1, "s1b")
    x = conv(x, 64, 128, 3, 2, "s2")                  # 80  (P3)
    p3 = conv(x, 128, 128, 3, 1, "s2b")
    x = conv(p3, 128, 256, 3, 2, "s3")                # 40  (P4)
    p4 = conv(x, 256, 256, 3, 1, "s3b")
    x = conv(p4, 256, 512, 3, 2, "s4")                # 20  (P5)
    p5 = conv(x, 512, 512, 3, 1, "s4b")
    heads = []
    for name, feat, ch, cells in (("h3", p3, 128, 6400), ("h4", p4, 256, 1600), ("h5", p5, 512, 400)):
        h = conv(feat, ch, 4 + CLASSES, 1, 1, name, act=False)
        inits.append(numpy_helper.from_array(np.array([0, 4 + CLASSES, cells], np.int64), f"{name}.shape"))
        nodes.append(helper.make_node("Reshape", [h, f"{name}.shape"], [f"{name}.r"]))
        heads.append(f"{name}.r")
    nodes.append(helper.make_node("Concat", heads, ["cat"], axis=2))
    nodes.append(helper.make_node("Sigmoid", ["cat"], ["output0"]))
    graph = helper.make_graph(nodes, "yolo-like", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 640, 640])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + CLASSES, 8400])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "names", repr({i: f"class{i}" for i in range(CLASSES)})
    onnx.save(model, str(path))
    return path


def random_images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8) for _ in range(count)]


def clip_images(path: Path, count: int) -> list[np.ndarray]:
    """``count`` frames spread over the clip (PyAV, as the extractor decodes them)."""
    import av

    with av.open(str(path)) as container:
        images = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    return [images[i * len(images) // count] for i in range(count)]


def measure(det: OnnxDetector, images: list[np.ndarray], batch: int, seconds: float) -> tuple[float, float]:
    """Frames per second, and CPU milliseconds per frame (this process, all its threads: the figure
    that holds when other work shares the machine)."""
    frames = [(FrameHeader(camera=f"cam{i}", seq=i, ts_ns=0, pts=None, width=img.shape[1], height=img.shape[0]), img)
              for i, img in enumerate(images[:batch])]
    det.detect(frames)  # warm-up: allocations, kernels
    n, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        det.detect(frames)
        n += batch
    return n / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--seconds", type=float, default=10.0, help="measuring time per batch size")
    ap.add_argument("--out", help="write the results as JSON here too")
    args = ap.parse_args()
    results: dict = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        # default thresholds: random weights put many of the 8400 candidates over 0.25, so the
        # decode + NMS share here is a worst case, not a typical one
        models = [("yolo-like", lambda: OnnxDetector(str(build_yolo_like(Path(tmp) / "yolo-like.onnx"))),
                   lambda: random_images(16), "random 1280x720")]
        if SSD_MODEL.is_file():
            clip = SSD_CLIP.is_file()
            models.append(("coco-ssd-mobilenetv2", lambda: OnnxDetector(str(SSD_MODEL)),
                           (lambda: clip_images(SSD_CLIP, 16)) if clip else (lambda: random_images(16)),
                           SSD_CLIP.name if clip else "random 1280x720"))
        else:
            print(json.dumps({"skipped": "coco-ssd-mobilenetv2", "reason": f"{SSD_MODEL} is absent"}), flush=True)
        for name, load, frames, source in models:
            det, images = load(), frames()
            entry = results["models"][name] = {"provider": det.provider, "layout": det.layout, "frames": source,
                                               "fps": {}, "cpu_ms_per_frame": {}}
            for batch in (1, 4, 16):
                fps, cpu_ms = measure(det, images, batch, args.seconds)
                entry["fps"][batch], entry["cpu_ms_per_frame"][batch] = round(fps, 2), round(cpu_ms, 1)
                print(json.dumps({"model": name, "batch": batch, "fps": entry["fps"][batch],
                                  "cpu_ms_per_frame": entry["cpu_ms_per_frame"][batch], "provider": det.provider}),
                      flush=True)
            entry["speedup_vs_batch1"] = {b: round(v / entry["fps"][1], 2) for b, v in entry["fps"].items()}
    print(json.dumps(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
