"""The built-in detectors on synthetic pictures with known content."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camwire.sample import background, sample_frame
from camwire.classifier.detectors import make_detector
from camwire.classifier.detectors.covered import judge
from camwire.common.wire import FrameHeader

W, H = 640, 360


def hdr(seq: int = 0, camera: str = "c") -> FrameHeader:
    return FrameHeader(camera=camera, seq=seq, ts_ns=0, pts=None, width=W, height=H)


def gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def noisy(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


SCENE = background(W, H)


@pytest.mark.parametrize("name, picture, state", [
    ("street", SCENE, "clear"),
    ("covered lens", sample_frame(130, 25, W, H, SCENE, (5, 8)), "covered"),
    ("night", noisy(SCENE // 12, 2, 1), "dark"),
    ("blown out", noisy(SCENE // 10 + 228, 2, 2), "bright"),
    ("dead stream", np.full((H, W, 3), (0, 135, 0), np.uint8), "uniform"),
])
def test_covered_tells_tampering_from_night_and_dead_streams(name, picture, state) -> None:
    assert judge(cv2.resize(gray(picture), (320, 180), interpolation=cv2.INTER_AREA))["scene"] == state, name


def test_covered_detector_flags_carry_its_n() -> None:
    det = make_detector("covered:frames=7")
    [res] = det.detect([(hdr(), sample_frame(130, 25, W, H, SCENE, (5, 8)))])
    assert res.flags["covered"] is True and res.flags["covered_after"] == 7


def test_detectors_combine_their_detections_and_flags() -> None:
    det = make_detector("hog+covered")  # motion is the extractor's now (tests/extractor/test_motion_detector.py)
    assert det.name == "hog+covered"
    [clear, covered] = det.detect([(hdr(0), SCENE), (hdr(1), sample_frame(130, 25, W, H, SCENE, (5, 8)))])
    assert clear.flags["scene"] == "clear" and covered.flags["covered"] is True
    assert all(d.label == "person" for d in clear.detections + covered.detections)


def test_hog_runs_and_maps_to_source_pixels() -> None:
    det = make_detector("hog")
    [res] = det.detect([(hdr(), SCENE)])
    for d in res.detections:
        assert d.label == "person" and 0 <= d.box[0] <= W


def test_unknown_detector_and_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("yolo9000")
    with pytest.raises(ValueError, match="key=value"):
        make_detector("covered:7")


def test_a_result_becomes_its_wire_form_or_is_refused() -> None:
    import math

    import msgspec

    from camwire.classifier.detectors import Detection, FrameResult
    from camwire.common import wire

    ok = FrameResult([Detection("car", 1.0000004, (1.04, 2, 3, 4))], {"covered": False, "scene": "clear",
                                                                      "edge_fraction": 0.01, "covered_after": 5})
    detections, flags = ok.to_wire()
    assert detections == [wire.Detection("car", 1.0, (1.0, 2.0, 3.0, 4.0))]
    assert flags == wire.Flags(covered=False, covered_after=5, scene="clear", edge_fraction=0.01)
    for bad in (FrameResult([Detection("car", 0.5, (math.nan, 0, 1, 1))]),
                FrameResult([Detection("car", math.nan, (0, 0, 1, 1))]),
                FrameResult(flags={"scene": "foggy"})):
        with pytest.raises(msgspec.ValidationError):
            bad.to_wire()
