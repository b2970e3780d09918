"""The ONNX detector on SSD models: built here with known outputs (exact geometry), and the real
pretrained COCO SSDLite-MobileNetV2 from ../shared/models on real footage (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import onnx
import pytest
import zmq
from onnx import TensorProto, helper, numpy_helper

from camwire.classifier.detectors import make_detector
from camwire.classifier.detectors.onnx import OnnxDetector
from camwire.classifier.detectors.ssd import COCO90, prepare
from camwire.common import wire
from camwire.common.wire import FrameHeader
from conftest import shared_clip, shared_model, tcp
from onnx_models import build_model, v8_rows

MODEL = "coco-ssd-mobilenetv2.onnx"
PERSON, CAR, GAP_12, DOG = 0, 2, 11, 17  # score columns: COCO category id - 1


def ssd_model(path: Path, scores: np.ndarray, boxes: np.ndarray, box_slope: np.ndarray | None = None,
              batch: int | None = None) -> Path:
    """An SSD-shaped model: uint8 ``[N, H, W, 3]`` in; ``scores [N, A, C]`` = ``scores`` and boxes
    ``[N, A, 1, 4]`` = ``boxes + mean(image) * box_slope`` out (``[A, 4]`` ymin, xmin, ymax, xmax)."""
    box_slope = np.zeros_like(boxes) if box_slope is None else box_slope
    n = batch or "batch"
    inp = helper.make_tensor_value_info("image_tensor:0", TensorProto.UINT8, [n, "height", "width", 3])
    inits = [numpy_helper.from_array(scores.astype(np.float32)[None], "scores"),
             numpy_helper.from_array(boxes.astype(np.float32)[None, :, None], "boxes"),
             numpy_helper.from_array(box_slope.astype(np.float32)[None, :, None], "box_slope"),
             numpy_helper.from_array(np.zeros((1, *scores.shape), np.float32), "no_slope"),
             numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"),
             numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), "shape4")]
    nodes = [helper.make_node("Cast", ["image_tensor:0"], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Reshape", ["mean", "shape3"], ["mean3"]),
             helper.make_node("Mul", ["mean3", "no_slope"], ["nothing"]),  # [N, A, C]: a row per image
             helper.make_node("Add", ["scores", "nothing"], ["Postprocessor/Slice:0"]),
             helper.make_node("Reshape", ["mean", "shape4"], ["mean4"]),
             helper.make_node("Mul", ["mean4", "box_slope"], ["moved"]),
             helper.make_node("Add", ["boxes", "moved"], ["Postprocessor/ExpandDims_1:0"])]
    outs = [helper.make_tensor_value_info("Postprocessor/Slice:0", TensorProto.FLOAT, [n, *scores.shape]),
            helper.make_tensor_value_info("Postprocessor/ExpandDims_1:0", TensorProto.FLOAT, [n, len(boxes), 1, 4])]
    model = helper.make_model(helper.make_graph(nodes, "ssd-standin", [inp], outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def anchors(*rows: tuple[int, float, float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``(column, score, ymin, xmin, ymax, xmax)`` per anchor -> scores ``[A, 90]``, boxes ``[A, 4]``."""
    scores, boxes = np.zeros((len(rows), 90), np.float32), np.zeros((len(rows), 4), np.float32)
    for i, (column, score, *box) in enumerate(rows):
        scores[i, column] = score
        boxes[i] = box
    return scores, boxes


def frame(w: int, h: int, value: int = 100, seq: int = 0) -> tuple[FrameHeader, np.ndarray]:
    return FrameHeader(camera="c", seq=seq, ts_ns=0, width=w, height=h), np.full((h, w, 3), value, np.uint8)


def found(result) -> list[tuple[str, float, tuple[float, ...]]]:
    return [(d.label, round(d.confidence, 4), tuple(round(v, 2) for v in d.box)) for d in result.detections]


GEOMETRY = anchors(
    (PERSON, 0.90, 0.25, 0.125, 0.75, 0.375),
    (PERSON, 0.80, 0.25, 0.125, 0.8125, 0.375),  # the same person again (IoU 0.89): suppressed
    (CAR, 0.70, 0.25, 0.125, 0.75, 0.375),       # a car in the same place: another class, kept
    (GAP_12, 0.50, -0.1, 0.5, 0.25, 1.125),      # an id COCO left out; a box past the edge: clipped
    (DOG, 0.25, 0.5, 0.75, 0.625, 0.875),        # exactly at the threshold: kept
    (DOG, 0.2499, 0.0, 0.0, 0.5, 0.5))           # just under: dropped


def test_prepare_resizes_to_the_input_and_swaps_to_rgb() -> None:
    bgr = np.zeros((720, 1280, 3), np.uint8)
    bgr[:, :, 2] = 255  # red
    rgb = prepare(bgr, (300, 300))
    assert rgb.shape == (300, 300, 3) and rgb.dtype == np.uint8
    assert rgb[150, 150].tolist() == [255, 0, 0]
    assert prepare(np.full((480, 640), 7, np.uint8), (300, 300)).shape == (300, 300, 3)  # grey
    assert prepare(np.zeros((10, 20, 4), np.uint8), (20, 10)).shape == (10, 20, 3)  # BGRA, already that size


def test_ssd_layout_read_from_the_model_and_boxes_in_each_frames_pixels(tmp_path: Path) -> None:
    model = ssd_model(tmp_path / "ssd.onnx", *GEOMETRY)
    det = make_detector(f"onnx:{model}")
    assert isinstance(det, OnnxDetector) and det.layout == "ssd" and det.size == (300, 300)
    assert det.labels[:4] == ["person", "bicycle", "car", "motorcycle"] and det.labels[GAP_12] == "12"
    assert len(det.labels) == 90 and len(COCO90) == 80
    big, small = det.detect([frame(1280, 720), frame(640, 480)])
    assert found(big) == [("person", 0.9, (160.0, 180.0, 480.0, 540.0)), ("car", 0.7, (160.0, 180.0, 480.0, 540.0)),
                          ("12", 0.5, (640.0, 0.0, 1280.0, 180.0)), ("dog", 0.25, (960.0, 360.0, 1120.0, 450.0))]
    assert found(small) == [("person", 0.9, (80.0, 120.0, 240.0, 360.0)), ("car", 0.7, (80.0, 120.0, 240.0, 360.0)),
                            ("12", 0.5, (320.0, 0.0, 640.0, 120.0)), ("dog", 0.25, (480.0, 240.0, 560.0, 300.0))]


def test_thresholds_class_filter_and_labels_file(tmp_path: Path) -> None:
    model = ssd_model(tmp_path / "ssd.onnx", *GEOMETRY)
    src = [frame(1280, 720)]
    (res,) = make_detector(f"onnx:{model}", {"classes": "car,dog", "confidence": 0.5}).detect(src)
    assert found(res) == [("car", 0.7, (160.0, 180.0, 480.0, 540.0))]
    (res,) = make_detector(f"onnx:{model}", {"iou": 0.95}).detect(src)  # looser NMS keeps both persons
    assert [d.label for d in res.detections] == ["person", "person", "car", "12", "dog"]
    (res,) = make_detector(f"onnx:{model}", {"max_detections": 2}).detect(src)
    assert [d.label for d in res.detections] == ["person", "car"]
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"thing{i}\n" for i in range(90)))
    (res,) = make_detector(f"onnx:{model}", {"labels": str(labels)}).detect(src)
    assert [d.label for d in res.detections] == ["thing0", "thing2", "thing11", "thing17"]
    with pytest.raises(ValueError, match="not among the model's labels"):
        make_detector(f"onnx:{model}", {"classes": "unicorn"})


@pytest.mark.parametrize("batch", [None, 1, 2])
def test_a_batch_of_frames_of_different_sizes_keeps_each_its_own_answer(tmp_path: Path, batch: int | None) -> None:
    """Frames of two sizes and six brightnesses, run together (any batch, one at a time, or
    exactly two with the last batch padded), each get what they get alone."""
    scores, boxes = anchors((PERSON, 0.9, 0.25, 0.0, 0.5, 0.125))
    slope = np.zeros_like(boxes)
    slope[0, [1, 3]] = 0.5 / 255  # the box moves right with the frame's brightness
    det = make_detector(f"onnx:{ssd_model(tmp_path / 'b.onnx', scores, boxes, slope, batch)}")
    frames = [frame(*size, value=v, seq=i) for i, (size, v) in
              enumerate(zip([(1280, 720), (640, 480)] * 3, (0, 60, 120, 180, 240, 30)))]
    together = det.detect(frames)
    alone = [det.detect([f])[0] for f in frames]
    assert [found(r) for r in together] == [found(r) for r in alone]
    assert len({found(r)[0][2] for r in together}) == len(frames)  # six different answers
    # 60 of 255: the box moved by 0.5 * 60 / 255 of the 640 px frame's width
    assert found(together[1])[0][2] == pytest.approx((640 * 0.5 * 60 / 255, 120.0, 80 + 640 * 0.5 * 60 / 255, 240.0),
                                                     abs=0.01)


def test_a_layout_that_does_not_fit_the_model_is_a_clear_error(tmp_path: Path) -> None:
    ssd = ssd_model(tmp_path / "ssd.onnx", *GEOMETRY)
    with pytest.raises(ValueError, match="is an SSD model"):
        make_detector(f"onnx:path={ssd},layout=v8")
    assert make_detector(f"onnx:path={ssd},layout=ssd").layout == "ssd"
    yolo = build_model(tmp_path / "v8.onnx", v8_rows((320, 320, 100, 50, 1, 0.9), classes=3))
    with pytest.raises(ValueError, match="not an SSD model"):
        make_detector(f"onnx:path={yolo},layout=ssd")


# the real pretrained model, on real footage


@pytest.fixture(scope="module")
def coco_ssd() -> OnnxDetector:
    det = make_detector(f"onnx:{shared_model(MODEL)}")
    assert isinstance(det, OnnxDetector) and det.layout == "ssd"
    return det


def clip_frames(name: str, every: int) -> list[tuple[FrameHeader, np.ndarray]]:
    with av.open(str(shared_clip(name))) as container:
        images = [f.to_ndarray(format="bgr24") for i, f in enumerate(container.decode(video=0)) if i % every == 0]
    return [(FrameHeader(camera="cam", seq=i, ts_ns=0, width=img.shape[1], height=img.shape[0]), img)
            for i, img in enumerate(images)]


def confident(result, label: str, at_least: float = 0.5) -> list:
    return [d for d in result.detections if d.label == label and d.confidence >= at_least]


def test_real_model_finds_the_people_walking_and_the_parked_cars(coco_ssd: OnnxDetector) -> None:
    frames = clip_frames("people-walking.mp4", every=100)  # 8 frames across the 80 s clip, 768x576
    results = coco_ssd.detect(frames)
    for (header, _), res in zip(frames, results, strict=True):
        people = confident(res, "person")
        assert 1 <= len(people) <= 20, found(res)  # a few pedestrians, not a crowd of ghosts
        assert confident(res, "car"), found(res)  # the two cars parked at the top right
        for d in res.detections:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= header.width and 0 <= y1 < y2 <= header.height
    # pedestrians are upright: most person boxes are taller than wide
    people = [d for res in results for d in confident(res, "person")]
    assert sum(d.box[3] - d.box[1] > d.box[2] - d.box[0] for d in people) > 0.8 * len(people)


def test_real_model_batch_of_two_sizes_equals_one_at_a_time(coco_ssd: OnnxDetector) -> None:
    walking = clip_frames("people-walking.mp4", every=200)[:2]  # 768x576
    cars = clip_frames("car-detection.mp4", every=100)[1:3]  # 768x432
    frames = [walking[0], cars[0], walking[1], cars[1]]
    together = coco_ssd.detect(frames)
    alone = [coco_ssd.detect([f])[0] for f in frames]
    for a, b in zip(together, alone, strict=True):
        assert [d.label for d in a.detections] == [d.label for d in b.detections]
        assert np.allclose([d.confidence for d in a.detections], [d.confidence for d in b.detections], atol=1e-3)
        assert np.allclose([d.box for d in a.detections], [d.box for d in b.detections], atol=0.5)
    assert confident(together[0], "person") and confident(together[2], "person")


def test_real_model_in_a_worker_process_finds_people_in_the_clip(daemons, zctx) -> None:
    """extractor -> ventilator -> ``camwire classifier --detector onnx:<model>``, all real processes;
    the test is the sink and reads every result the worker sends."""
    model, clip = shared_model(MODEL), shared_clip("people-walking.mp4")
    frontend, backend, results = tcp(), tcp(), tcp()
    sink = zctx.socket(zmq.PULL)
    sink.setsockopt(zmq.LINGER, 0)
    sink.bind(results)
    daemons.start("ventilator", "ventilator", "--frontend", frontend, "--backend", backend)
    daemons.start("worker-1", "classifier", "--connect", backend, "--sink", results, "--detector",
                  f"onnx:{model}", "--name", "worker-1", "--batch", "4", "--confidence", "0.5")
    daemons.start("extractor-walk", "extractor", "--camera", "walk", "--source", str(clip), "--push", frontend,
                  "--every", "20", "--detect", "always")  # 40 frames across the clip, moving or not
    got: list[wire.Result] = []
    eos = None
    while eos is None or len(got) < (eos.results or 0):
        assert sink.poll(120_000), f"no message from the worker after {len(got)} results"
        msg = wire.unpack(sink.recv_multipart()[0])
        if isinstance(msg, wire.Result):
            got.append(msg)
        elif isinstance(msg, wire.Eos):
            eos = msg
    assert daemons.wait("extractor-walk") == 0
    assert len(got) == eos.sent == 40
    assert {r.camera for r in got} == {"walk"} and all(r.error is None for r in got)
    assert {r.detector for r in got} == {f"onnx:{MODEL}"}
    with_people = [r for r in got if any(d.label == "person" for d in r.detections)]
    assert len(with_people) >= 0.9 * len(got)
    for r in got:
        assert (r.width, r.height) == (768, 576)
        assert all(0 <= d.box[0] < d.box[2] <= 768 and 0 <= d.box[1] < d.box[3] <= 576 for d in r.detections)
