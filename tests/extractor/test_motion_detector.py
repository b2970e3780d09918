"""The extractor's motion detector on synthetic pictures with known content: it finds what
moves, in source pixels, and not sensor noise, flicker, a shaking camera or what a mask hides."""

from __future__ import annotations

import cv2
import numpy as np

from camwire.sample import background, sample_frame
from camwire.common.geometry import parse_polygon
from camwire.extractor.motion import MotionDetector, MotionGate, MotionSettings

W, H = 640, 360
SCENE = background(W, H)


def boxes(frames: list[np.ndarray], detector: MotionDetector | None = None) -> list[list]:
    """Each frame's boxes, the grey copy made as the extractor makes it (320 wide)."""
    det = detector or MotionDetector(MotionSettings())
    w, h = det.small_size(W, H)
    return [det.boxes(cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (w, h), interpolation=cv2.INTER_AREA), W, H)
            for f in frames]


def noisy(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def test_motion_finds_a_moving_object_in_source_pixels() -> None:
    found = boxes([sample_frame(i, 25, W, H, SCENE, None) for i in range(0, 40, 4)])
    assert not found[0]  # the first frame only seeds the background
    assert all(found[1:])
    for x1, y1, x2, y2 in found[-1]:
        assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H
    # the yellow box of frame 36 (x from t * W / 4 - 60, at H / 2) is inside one of them
    x = int((36 / 25 * W / 4) % (W + 120)) - 60
    assert any(b[0] <= x + 30 <= b[2] and b[1] <= H / 2 + 20 <= b[3] for b in found[-1])


def test_motion_ignores_noise_flicker_and_vibration() -> None:
    frames = []
    for i in range(30):
        img = noisy(SCENE, 4, i)  # sensor noise
        img = cv2.convertScaleAbs(img, alpha=1.0, beta=25 * (i % 2))  # flickering light
        shift = np.float32([[1, 0, (i % 3) - 1], [0, 1, (i % 2)]])  # a camera shaking by a pixel
        frames.append(cv2.warpAffine(img, shift, (W, H), borderMode=cv2.BORDER_REFLECT))
    assert not any(boxes(frames))


def test_a_mask_hides_what_moves_inside_it() -> None:
    frames = [sample_frame(i, 25, W, H, SCENE, None) for i in range(0, 40, 4)]
    lower = parse_polygon([[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]], "mask")  # both shapes move down there
    assert not any(boxes(frames, MotionDetector(MotionSettings(), (lower,))))
    upper = parse_polygon([[0.0, 0.0], [1.0, 0.0], [1.0, 0.3], [0.0, 0.3]], "mask")  # nothing moves up there
    assert all(boxes(frames, MotionDetector(MotionSettings(), (upper,)))[1:])


def test_the_gate_opens_with_motion_and_closes_after_the_off_delay() -> None:
    gate = MotionGate("c", MotionSettings(off_delay=2.0, heartbeat=5.0))
    said, sent = [], []
    for i in range(120):  # 10 fps: motion in frames 20-39 only
        t = i / 10
        change = gate.update([(1.0, 1.0, 9.0, 9.0)] if 20 <= i < 40 else [], t, i * 100_000_000, i)
        if change is not None:
            said.append((change.active, change.seq))
        if gate.wanted(t):
            gate.sent(t)
            sent.append(i)
    assert said == [(True, 20), (False, 59)]  # off 2 s after the last moving frame (39)
    assert sent == [0, *range(20, 59), 108]  # the first frame, the moving stretch, a heartbeat 5 s on
    always = MotionGate("c", MotionSettings(), detect="always")
    assert all(always.wanted(i / 10) for i in range(50))
