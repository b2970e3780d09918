"""YOLOX exports (the raw head: grids of strides 8, 16 and 32), camwire's built-in model among
them: a model made here at another input size, whose one box the decode must place exactly, and
the shipped YOLOX-Nano in a real worker process finding the people of a real clip."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import zmq

from camwire.classifier.detectors.onnx import BUILTIN_MODEL, OnnxDetector
from camwire.classifier.detectors.ssd import COCO80
from camwire.classifier.detectors.yolo import letterbox, yolox_cells
from camwire.common import pixels, wire
from conftest import SHARED_MEDIA, bound
from onnx_models import build_model

W, H = 320, 256  # not the shipped model's 416x416: the grids follow the model's input


def yolox_head(cell: tuple[int, int, int], raw: tuple[float, float, float, float], obj: float, cls: int,
               score: float) -> np.ndarray:
    """``[rows, 85]`` of a W x H YOLOX head, all zero but the row of ``cell`` (stride, gx, gy)."""
    rows = np.zeros((yolox_cells((W, H)), 85), np.float32)
    stride, gx, gy = cell
    index = sum((W // s) * (H // s) for s in (8, 16, 32) if s < stride) + gy * (W // stride) + gx
    rows[index, :4] = raw
    rows[index, 4], rows[index, 5 + cls] = obj, score
    return rows


def test_a_yolox_head_is_recognised_and_decoded_exactly(tmp_path: Path) -> None:
    # stride 16, cell (5, 3): centre ((0.5 + 5) * 16, (0.25 + 3) * 16) = (88, 52), size 2 * 16 by
    # 4 * 16: [72, 20, 104, 84] in the model's input; a 640x512 frame is scaled by 0.5 into its
    # top-left corner, so [144, 40, 208, 168] in the frame's own pixels
    head = yolox_head((16, 5, 3), (0.5, 0.25, math.log(2), math.log(4)), obj=0.9, cls=2, score=0.8)
    model = build_model(tmp_path / "yolox-320x256.onnx", head, size=(W, H))
    detector = OnnxDetector(str(model))  # no layout given: told by its row count
    assert detector.layout == "yolox" and detector.size == (W, H) and detector.labels == list(COCO80)
    frame = np.zeros((512, 640, 3), np.uint8)
    [result] = detector.detect([(None, frame)])
    [found] = result.detections
    assert found.label == "car" and found.confidence == pytest.approx(0.72)
    assert found.box == pytest.approx((144.0, 40.0, 208.0, 168.0))


def test_yolox_input_is_bgr_0_to_255_in_the_top_left_corner() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[..., 0] = 10  # blue
    frame[..., 2] = 200  # red
    tensor, fit = letterbox(frame, (W, H), yolox=True)
    assert tensor.shape == (3, H, W) and (fit.pad_x, fit.pad_y) == (0.0, 0.0)
    assert tensor[0, 0, 0] == 10 and tensor[2, 0, 0] == 200  # BGR, not scaled to 0-1
    assert tensor[0, H - 1, 0] == 114  # below the frame (scaled to 320x160): the grey pad


def test_the_built_in_model_ships_with_its_licence() -> None:
    folder = BUILTIN_MODEL.parent
    assert BUILTIN_MODEL.is_file() and BUILTIN_MODEL.stat().st_size > 3_000_000
    assert "Apache License" in (folder / "LICENSE-yolox-nano.txt").read_text()
    assert "Megvii" in (folder / "README.md").read_text()


@pytest.mark.skipif(not (SHARED_MEDIA / "people-walking.mp4").exists(), reason="../shared/media is absent")
def test_the_built_in_model_finds_people_in_a_real_worker(daemons, zctx) -> None:
    """``--detector onnx`` with no path: the shipped YOLOX-Nano, in a worker process, on a frame of
    a real street scene; boxes in the frame's pixels."""
    with av.open(str(SHARED_MEDIA / "people-walking.mp4")) as clip:
        image = next(clip.decode(video=0)).to_ndarray(format="bgr24")
    (router, backend), (sink, results) = bound(zctx, zmq.ROUTER), bound(zctx, zmq.PULL)
    daemons.start("worker", "classifier", "--connect", backend, "--sink", results, "--detector", "onnx",
                  "--name", "w1", "--threads", "1")
    assert router.poll(60_000), "no ready from the worker"
    ident, _ = router.recv_multipart()
    height, width = image.shape[:2]
    header = wire.FrameHeader(camera="street", seq=0, ts_ns=1, width=width, height=height, prev=-1)
    router.send_multipart([ident, *pixels.encode_frame(header, image)])
    assert sink.poll(60_000), "no result from the worker"
    result = wire.unpack(sink.recv_multipart()[0])
    assert isinstance(result, wire.Result) and result.error is None and result.detector == "onnx:yolox-nano-416.onnx"
    people = [d for d in result.detections if d.label == "person" and d.confidence >= 0.5]
    assert len(people) >= 3  # the walkers of its first frame (4 at 0.75-0.85 when this was written)
    assert all(0 <= d.box[0] < d.box[2] <= width and 0 <= d.box[1] < d.box[3] <= height for d in people)
    assert daemons.stop("worker") == 0
