"""The ONNX Runtime detector, on models built in the test with known outputs (tests/onnx_models.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from camwire.classifier.detectors import make_detector
from camwire.classifier.detectors.onnx import OnnxDetector
from camwire.classifier.detectors.yolo import Thresholds, letterbox
from camwire.common.wire import FrameHeader
from onnx_models import build_model, v8_rows

NAMES = ["person", "car", "dog"]


def frame(w: int = 1280, h: int = 720, value: int = 100, seq: int = 0):
    return FrameHeader(camera="c", seq=seq, ts_ns=0, pts=None, width=w, height=h), np.full((h, w, 3), value, np.uint8)


def boxes(result) -> list[tuple[str, float, tuple[float, ...]]]:
    return [(d.label, round(d.confidence, 4), tuple(round(v, 3) for v in d.box)) for d in result.detections]


def test_letterbox_fits_and_centres() -> None:
    img = np.zeros((720, 1280, 3), np.uint8)
    img[:, :, 2] = 255  # red in BGR
    tensor, lb = letterbox(img, (640, 640))
    assert tensor.shape == (3, 640, 640) and tensor.dtype == np.float32
    assert (lb.scale, lb.pad_x, lb.pad_y) == (0.5, 0.0, 140.0)
    assert tensor[0, 320, 320] == 1.0 and tensor[2, 320, 320] == 0.0  # RGB order, scaled to [0, 1]
    assert tensor[0, 100, 320] == pytest.approx(114 / 255)  # grey padding above the picture
    # a box in model pixels maps back through the padding and the scale
    assert lb.to_source(np.array([[270.0, 295.0, 370.0, 345.0]], np.float32)).tolist() == [[540, 310, 740, 410]]


def test_v8_boxes_mapped_to_source_pixels(tmp_path: Path) -> None:
    rows = v8_rows((320, 320, 100, 50, 1, 0.9), classes=3)
    model = build_model(tmp_path / "v8.onnx", rows, names=NAMES)
    det = make_detector(f"onnx:{model}")
    assert isinstance(det, OnnxDetector) and det.layout == "v8" and det.labels == NAMES
    assert det.provider == "CPUExecutionProvider"  # no GPU on the test machine
    (res,) = det.detect([frame()])
    assert boxes(res) == [("car", 0.9, (540.0, 310.0, 740.0, 410.0))]


def test_confidence_threshold_nms_and_class_filter(tmp_path: Path) -> None:
    rows = v8_rows(
        (100, 200, 80, 80, 0, 0.90),  # person
        (105, 200, 80, 80, 0, 0.80),  # the same person again: IoU 0.88, suppressed
        (104, 204, 80, 80, 1, 0.70),  # a car in the same place: another class, kept
        (400, 400, 40, 40, 2, 0.25),  # a dog exactly at the threshold: kept
        (500, 500, 40, 40, 2, 0.2499),  # just under: dropped
        classes=3)
    model = build_model(tmp_path / "m.onnx", rows, names=NAMES)
    src = frame(640, 640)
    (res,) = make_detector(f"onnx:{model}").detect([src])
    assert boxes(res) == [("person", 0.9, (60.0, 160.0, 140.0, 240.0)), ("car", 0.7, (64.0, 164.0, 144.0, 244.0)),
                          ("dog", 0.25, (380.0, 380.0, 420.0, 420.0))]
    (res,) = make_detector(f"onnx:{model}", {"classes": "car,dog", "confidence": 0.5}).detect([src])
    assert boxes(res) == [("car", 0.7, (64.0, 164.0, 144.0, 244.0))]
    (res,) = make_detector(f"onnx:{model}", {"iou": 0.95}).detect([src])  # looser NMS keeps both persons
    assert [d.label for d in res.detections] == ["person", "person", "car", "dog"]
    with pytest.raises(ValueError, match="not among the model's labels"):
        make_detector(f"onnx:{model}", {"classes": "unicorn"})


def test_v5_layout_multiplies_objectness(tmp_path: Path) -> None:
    rows = np.zeros((6, 5 + 3), np.float32)
    rows[0] = (320, 320, 64, 64, 0.5, 0.1, 0.9, 0.0)  # obj 0.5 * car 0.9 = 0.45
    rows[1] = (100, 100, 10, 10, 0.2, 0.0, 0.0, 0.9)  # 0.18: under 0.25
    model = build_model(tmp_path / "v5.onnx", rows, names=NAMES)
    det = make_detector(f"onnx:{model}")
    assert det.layout == "v5"
    (res,) = det.detect([frame(640, 640)])
    assert boxes(res) == [("car", 0.45, (288.0, 288.0, 352.0, 352.0))]


def test_models_with_nms_inside(tmp_path: Path) -> None:
    rows = np.zeros((4, 6), np.float32)
    rows[0] = (10, 150, 110, 250, 0.8, 2)  # x1 y1 x2 y2 score class, in model pixels
    rows[1] = (12, 152, 112, 252, 0.7, 2)  # overlaps, but NMS was the model's job: kept
    model = build_model(tmp_path / "nms.onnx", rows, names=NAMES)
    det = make_detector(f"onnx:{model}")
    assert det.layout == "nms"
    (res,) = det.detect([frame()])
    assert boxes(res) == [("dog", 0.8, (20.0, 20.0, 220.0, 220.0)), ("dog", 0.7, (24.0, 24.0, 224.0, 224.0))]

    e2e = np.array([[0, 10, 150, 110, 250, 1, 0.6]], np.float32)  # batch, x1 y1 x2 y2, class, score
    model = build_model(tmp_path / "e2e.onnx", e2e, batch=0, names=NAMES)
    det = make_detector(f"onnx:{model}")
    assert det.layout == "nms7"
    (res,) = det.detect([frame()])
    assert boxes(res) == [("car", 0.6, (20.0, 20.0, 220.0, 220.0))]


@pytest.mark.parametrize("batch", [None, 1, 4])
def test_batches_keep_each_frame_its_own_answer(tmp_path: Path, batch: int | None) -> None:
    """A batch of frames from different cameras gives each frame exactly what it gets alone,
    whether the model takes any batch size, one frame, or exactly four (the last batch padded)."""
    rows = v8_rows((100, 320, 20, 20, 0, 0.9), classes=3)
    slope = np.zeros_like(rows)
    slope[0, 0] = 400.0  # the box moves right with the frame's brightness
    model = build_model(tmp_path / "b.onnx", rows, slope, batch=batch, names=NAMES)
    det = make_detector(f"onnx:{model}")
    frames = [frame(value=v, seq=i) for i, v in enumerate((0, 60, 120, 180, 240, 30))]
    together = det.detect(frames)
    alone = [det.detect([f])[0] for f in frames]
    assert [boxes(r) for r in together] == [boxes(r) for r in alone]
    assert len({boxes(r)[0][2] for r in together}) == len(frames)  # six different answers


def test_size_and_names_from_metadata_or_labels_file(tmp_path: Path) -> None:
    rows = v8_rows((160, 160, 32, 32, 1, 0.9), classes=2)
    model = build_model(tmp_path / "dyn.onnx", rows, size=None, imgsz=(320, 320), names=["a", "b"])
    det = make_detector(f"onnx:{model}")
    assert det.size == (320, 320)
    (res,) = det.detect([frame(640, 640)])  # scale 0.5: the box doubles
    assert boxes(res) == [("b", 0.9, (288.0, 288.0, 352.0, 352.0))]
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\nbird\n")
    (res,) = make_detector(f"onnx:{model}", {"labels": str(labels)}).detect([frame(640, 640)])
    assert res.detections[0].label == "bird"
    unnamed = build_model(tmp_path / "unnamed.onnx", rows)
    (res,) = make_detector(f"onnx:{unnamed}").detect([frame(640, 640)])
    assert res.detections[0].label == "1"  # no names anywhere: the class id


def test_bad_model_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load"):
        make_detector(f"onnx:{bad}")
    with pytest.raises(ValueError, match="no model file"):
        make_detector(f"onnx:{tmp_path / 'missing.onnx'}")
    assert Thresholds().confidence == 0.25


def test_worker_batches_frames_from_several_cameras(pipeline_factory, daemons, sample_clip: Path, tmp_path: Path) -> None:
    """A worker process with --batch 4 runs frames of two cameras together; the events carry
    boxes in each camera's own pixels."""
    rows = v8_rows((320, 320, 100, 50, 1, 0.9), classes=3)
    model = build_model(tmp_path / "m.onnx", rows, names=NAMES)
    p = pipeline_factory(until="a,b")
    p.worker("worker-1", f"onnx:{model}", "--batch", "4", "--batch-wait", "200ms")
    p.extractor("a", str(sample_clip))
    p.extractor("b", str(sample_clip))
    assert daemons.wait("sink", timeout=180) == 0
    assert daemons.stop("worker-1") == 0
    stats = daemons.stats("worker-1")
    assert stats["processed"] == {"a": 300, "b": 300}
    assert stats["batches"] < 600 / 2  # frames went through four at a time, not one by one
    events = [e for e in p.events_written() if e["type"] == "object"]  # the tracked car, per camera
    assert {e["camera"] for e in events} == {"a", "b"}
    # 640x360 into 640x640: scale 1, 140 px of padding above
    assert all((e["label"], e["score"], e["box"]) == ("car", 0.9, [270.0, 155.0, 370.0, 205.0]) for e in events)
