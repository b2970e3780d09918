"""An object's thumbnail (sink.store.snapshots): the object in its surroundings, 16:9, inside the
frame, the box always whole. Checked on a real frame (people-walking.mp4 from ../shared/media,
768x576: not 16:9, so the aspect and the frame's edges both bind; a textured synthetic street
where that folder is absent) resized for detection as a camera's detect_size does, with an
object drawn at its box: where the thumbnail came from is found in the frame by its pixels."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter
from camwire.common.pixels import Pixels, decode_jpeg, pack_pixels
from camwire.sample import background
from camwire.sink.store.disk import WriteErrors
from camwire.sink.store.snapshots import ABOVE, ASPECT, BELOW, MIN_WIDTH, SIDE, THUMB, SnapshotStore, thumb_crop
from conftest import SHARED_MEDIA

SOURCE = (768, 576)  # the camera's pixels, which boxes are in
DETECT = (384, 288)  # the pixels the detector saw and the sink got: half the source's
MAGENTA = (255, 0, 255)  # BGR: the object drawn, a colour neither the square nor the street has


class _Log:
    def __getattr__(self, _name):
        return lambda *a, **k: None


def source_frame() -> np.ndarray:
    """A real frame of the source's size; a synthetic one, with texture to place a crop by, without the clip."""
    clip = SHARED_MEDIA / "people-walking.mp4"
    if clip.exists():
        with av.open(str(clip)) as container:
            frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
        assert frame.shape[1::-1] == SOURCE
        return frame
    noise = np.random.default_rng(3).integers(-25, 26, (SOURCE[1], SOURCE[0], 3))
    return np.clip(background(*SOURCE).astype(int) + noise, 0, 255).astype(np.uint8)


def thumbnail_of(tmp_path: Path, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The thumbnail the store writes for an object at ``box`` (source pixels) in ``image`` (detect pixels)."""
    counters = Counters()
    store = SnapshotStore(tmp_path / "snapshots", counters, WriteErrors(counters, RepeatLimiter(_Log())), min_free=0.0)
    event = wire.Event(id=f"20261121T051900.{int(box[0]):09d}Z-square-object", type="object", camera="square",
                       ts=1_795_000_000.0)
    data, shape = pack_pixels(image)
    named = store.save(event, Pixels.of(shape, data), SOURCE, box, "person")
    assert named is not None
    thumb = decode_jpeg((tmp_path / named.replace(".jpg", ".thumb.jpg")).read_bytes())
    assert thumb is not None
    return thumb


def located(image: np.ndarray, thumb: np.ndarray) -> tuple[tuple[int, int, int, int], float]:
    """Where in ``image`` the thumbnail was cropped from, and to how many of the image's pixels
    that is known (one of the thumbnail's): of the crop widths it could have been scaled from, the
    one whose best place matches its pixels best, searched coarse then fine."""
    tw = thumb.shape[1]
    coarse = min(range(tw, image.shape[1] + 1, 8), key=lambda width: _match(image, thumb, width)[0])
    fine = range(max(tw, coarse - 8), min(image.shape[1], coarse + 8) + 1)
    score, place = min((_match(image, thumb, width) for width in fine), key=lambda m: m[0])
    assert score < 0.01, f"the thumbnail is not a crop of the frame (best match {score:.3f})"
    return place, (place[2] - place[0]) / tw + 1


def _match(image: np.ndarray, thumb: np.ndarray, width: int) -> tuple[float, tuple[int, int, int, int]]:
    """How well ``thumb`` matches ``image`` scaled as a crop ``width`` wide would be, and where."""
    th, tw = thumb.shape[:2]
    scale = tw / width
    scaled = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                        interpolation=cv2.INTER_AREA)
    if scaled.shape[0] < th or scaled.shape[1] < tw:
        return np.inf, (0, 0, 0, 0)
    score = cv2.matchTemplate(scaled, thumb, cv2.TM_SQDIFF_NORMED)
    _, _, (x, y), _ = cv2.minMaxLoc(score)
    left, top = round(x / scale), round(y / scale)
    return float(score[y, x]), (left, top, left + width, top + round(th / scale))


@pytest.mark.parametrize("box, edges", [
    ((340.0, 200.0, 400.0, 340.0), "none"),  # a person in the square's middle: context all round
    ((10.0, 4.0, 70.0, 144.0), "top left"),  # at the frame's corner: the crop moved in, not shrunk
    ((700.0, 430.0, 760.0, 570.0), "bottom right"),
])
def test_a_thumbnail_shows_the_whole_object_in_its_surroundings_at_16_9(tmp_path: Path, box, edges: str) -> None:
    image = cv2.resize(source_frame(), DETECT, interpolation=cv2.INTER_AREA)
    x1, y1, x2, y2 = (round(v / 2) for v in box)  # the box in the detect pixels
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), MAGENTA, -1)
    thumb = thumbnail_of(tmp_path, image, box)
    th, tw = thumb.shape[:2]
    assert max(th, tw) == THUMB and tw / th == pytest.approx(ASPECT, abs=0.02)

    (left, top, right, bottom), near = located(image, thumb)
    assert -near <= left and -near <= top and right <= DETECT[0] + near and bottom <= DETECT[1] + near
    bw, bh = x2 - x1, y2 - y1
    # the box and its margin, as far as the frame goes
    assert left <= max(0, x1 - bw * SIDE) + near and right >= min(DETECT[0], x2 + bw * SIDE) - near
    assert top <= max(0, y1 - bh * ABOVE) + near and bottom >= min(DETECT[1], y2 + bh * BELOW) - near
    if edges == "top left":  # moved against the frame's corner
        assert (left, top) == pytest.approx((0, 0), abs=near)
    if edges == "bottom right":
        assert (right, bottom) == pytest.approx(DETECT, abs=near)

    # the object, whole: its every pixel in the thumbnail, none cut at the thumbnail's edges
    drawn = cv2.inRange(thumb, (200, 0, 200), (255, 80, 255))
    rows, cols = np.nonzero(drawn)
    scale = tw / (right - left)
    assert cols.min() > 0 and rows.min() > 0 and cols.max() < tw - 1 and rows.max() < th - 1
    assert [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1] == pytest.approx(
        [(x1 - left) * scale, (y1 - top) * scale, (x2 - left) * scale, (y2 - top) * scale], abs=2)


def test_an_object_bigger_than_any_16_9_crop_is_whole_all_the_same(tmp_path: Path) -> None:
    box = (100.0, 50.0, 700.0, 560.0)  # taller than a 16:9 crop the 4:3 frame holds: the aspect gives way
    image = cv2.resize(source_frame(), DETECT, interpolation=cv2.INTER_AREA)
    thumb = thumbnail_of(tmp_path, image, box)
    (left, top, right, bottom), near = located(image, thumb)
    assert max(thumb.shape[:2]) == THUMB
    assert (left, right) == pytest.approx((0, DETECT[0]), abs=near)  # the frame's width
    assert top <= 25 + near and bottom >= 280 - near  # the box's height, all of it


@pytest.mark.parametrize("size", [(640, 360), (768, 576), (1280, 720), (360, 640), (300, 100)])
def test_a_crop_is_inside_the_frame_holds_the_box_and_its_margin_where_it_can(size: tuple[int, int]) -> None:
    w, h = size
    rng = np.random.default_rng(w * h)
    for _ in range(2000):
        x1, x2 = sorted(rng.uniform(-20, w + 20, 2))
        y1, y2 = sorted(rng.uniform(-20, h + 20, 2))
        left, top, right, bottom = thumb_crop((x1, y1, x2, y2), size)
        cw, ch = right - left, bottom - top
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
        bx1, by1 = max(0.0, x1), max(0.0, y1)
        bx2, by2 = min(float(w), max(x2, bx1 + 1)), min(float(h), max(y2, by1 + 1))
        assert left <= bx1 and top <= by1 and right >= bx2 and bottom >= by2, "the box is cut"
        # the aspect holds unless the crop spans the frame one way (the box, or the frame, allows no other)
        assert abs(cw / ch - ASPECT) < 2 / min(cw, ch) + 0.01 or cw == w or ch == h
        bw, bh = bx2 - bx1, by2 - by1
        grown_w, grown_h = max(MIN_WIDTH, bw * (1 + 2 * SIDE)), bh * (1 + ABOVE + BELOW)
        if max(grown_w, grown_h * ASPECT) <= w and max(grown_h, grown_w / ASPECT) <= h:  # room for all the margin
            assert left <= max(0, bx1 - bw * SIDE) + 1 and right >= min(w, bx2 + bw * SIDE) - 1
            assert top <= max(0, by1 - bh * ABOVE) + 1 and bottom >= min(h, by2 + bh * BELOW) - 1
