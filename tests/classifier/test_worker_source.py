"""A worker process given a frame the extractor resized for detection (``FrameHeader.source``):
its result speaks in source pixels, and carries the pixels the detector saw (raw: the sink is on its host)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zmq

from camwire.common import pixels, wire
from conftest import bound
from onnx_models import build_model, v8_rows


def test_a_resized_frame_gets_its_boxes_in_source_pixels(daemons, zctx, tmp_path: Path) -> None:
    """The test is the worker's ventilator and its sink; the model finds a car at a known place."""
    # a car at (320, 320) 100x50 in the model's 640x640: in a 640x360 frame (140 px of padding
    # above it) that is [270, 155, 370, 205] (tests/classifier/test_onnx.py), in its 1280x720 source twice that
    model = build_model(tmp_path / "m.onnx", v8_rows((320, 320, 100, 50, 1, 0.9), classes=3),
                        names=["person", "car", "dog"])
    (router, backend), (sink, results) = bound(zctx, zmq.ROUTER), bound(zctx, zmq.PULL)
    daemons.start("worker", "classifier", "--connect", backend, "--sink", results, "--detector", f"onnx:{model}",
                  "--name", "w1")
    assert router.poll(30_000), "no ready from the worker"
    ident, first = router.recv_multipart()
    assert isinstance(wire.unpack(first), wire.Ready)

    image = np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    header = wire.FrameHeader(camera="cam", seq=0, ts_ns=1, width=640, height=360, enc="lz4", prev=-1,
                              source=(1280, 720))
    router.send_multipart([ident, *pixels.encode_frame(header, image)])
    assert sink.poll(30_000), "no result from the worker"
    parts = sink.recv_multipart()
    result = wire.unpack(parts[0])
    assert isinstance(result, wire.Result) and result.error is None
    assert [(d.label, d.confidence, d.box) for d in result.detections] == [("car", 0.9, (540.0, 310.0, 740.0, 410.0))]
    assert (result.width, result.height) == (1280, 720)
    assert result.image == (640, 360, 3) and len(parts) == 2
    assert result.image_enc == "raw" and parts[1] == image.tobytes()  # a sink on this host: raw, no codec
    assert daemons.stop("worker") == 0
    assert daemons.stats("worker")["processed"] == {"cam": 1}
