"""Masks and zones with exact geometry: points inside, outside and on the boundary of a square and
a triangle; fractions against pixels at two frame sizes; the drawn mask; what the parser refuses."""

from __future__ import annotations

import numpy as np
import pytest

from camwire.common.geometry import (Polygon, bottom_centre, contains, mask_image, parse_masks, parse_polygon, parse_zones,
                             zones_of)

SQUARE = parse_polygon([[10, 10], [20, 10], [20, 20], [10, 20]], "square")
TRIANGLE = parse_polygon([[0, 0], [100, 0], [0, 100]], "triangle")  # the hypotenuse is x + y = 100


@pytest.mark.parametrize(("x", "y", "inside"), [
    (15, 15, True), (10.001, 19.999, True),            # inside
    (9.999, 15, False), (20.001, 15, False), (15, 21, False), (25, 25, False),  # outside
    (10, 15, True), (20, 12, True), (15, 10, True), (15, 20, True),  # on an edge
    (10, 10, True), (20, 20, True),                     # on a corner
    (21, 10, False), (10, 9, False),                    # on an edge's line, past its end
])
def test_square(x: float, y: float, inside: bool) -> None:
    assert contains(SQUARE.points(640, 360), x, y) is inside


@pytest.mark.parametrize(("x", "y", "inside"), [
    (10, 10, True), (49, 50, True), (50, 50, True),     # (50, 50) is on the hypotenuse
    (50.001, 50, False), (60, 60, False), (0, 100, True), (0, 100.5, False), (-0.001, 50, False),
    (0, 50, True), (30, 70, True), (30.5, 70, False),
])
def test_triangle(x: float, y: float, inside: bool) -> None:
    assert contains(TRIANGLE.points(640, 360), x, y) is inside


def test_either_way_round_is_the_same_polygon() -> None:
    clockwise = parse_polygon([[10, 20], [20, 20], [20, 10], [10, 10]], "w").points(1, 1)
    for x, y in [(15, 15), (10, 15), (9, 15), (20, 20), (21, 21)]:
        assert contains(clockwise, x, y) is contains(SQUARE.points(1, 1), x, y)


def test_fractions_scale_with_the_frame_and_pixels_do_not() -> None:
    half = parse_polygon([[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]], "left half")
    assert half.fractions and not SQUARE.fractions
    assert half.points(640, 360).tolist() == [[0, 0], [320, 0], [320, 360], [0, 360]]
    assert half.points(1920, 1080).tolist() == [[0, 0], [960, 0], [960, 1080], [0, 1080]]
    assert contains(half.points(640, 360), 320, 100) and not contains(half.points(640, 360), 321, 100)
    assert contains(half.points(1920, 1080), 900, 100)  # past 640 pixels: still the left half
    assert SQUARE.points(640, 360).tolist() == SQUARE.points(1920, 1080).tolist() == [[10, 10], [20, 10], [20, 20],
                                                                                      [10, 20]]
    # one float among ints makes fractions; integers alone (even 0 and 1) are pixels; past 1 is pixels
    assert parse_polygon([[0, 0], [0.5, 0], [0, 1]], "f").fractions
    assert not parse_polygon([[0, 0], [1, 0], [0, 1]], "p").fractions
    assert not parse_polygon([[0.5, 0.5], [10.5, 0.5], [0.5, 10.5]], "p").fractions


def test_bottom_centre_and_zones_of() -> None:
    assert bottom_centre([10, 20, 30, 60]) == (20.0, 60.0)
    zones = parse_zones({"lawn": [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]], "gate": [[300, 300], [340, 300],
                                                                                             [340, 360], [300, 360]]},
                        "zones")
    # a person from y=100 to y=180 in a 640x360 frame stands at y=180, the lawn's top edge: in it
    assert zones_of([100, 100, 140, 180], zones, 640, 360) == ["lawn"]
    assert zones_of([100, 100, 140, 179], zones, 640, 360) == []
    assert zones_of([310, 250, 330, 320], zones, 640, 360) == ["lawn", "gate"]
    # at 1280x720 the lawn starts at y=360: the same pixel box stands above it now
    assert zones_of([100, 100, 140, 180], zones, 1280, 720) == []
    assert zones_of([100, 300, 140, 400], zones, 1280, 720) == ["lawn"]


def test_mask_image_marks_the_polygons_and_their_edges() -> None:
    img = mask_image([SQUARE, parse_polygon([[0.75, 0.0], [1.0, 0.0], [1.0, 1.0], [0.75, 1.0]], "right")], 40, 30)
    assert img.shape == (30, 40) and img.dtype == np.uint8 and set(np.unique(img)) == {0, 255}
    square = img[:, :30]
    assert (square[10:21, 10:21] == 255).all()  # edges included
    assert square.sum() == 255 * 11 * 11
    assert (img[:, 30:] == 255).all() and not img[:, 21:30].any()
    assert not mask_image([], 40, 30).any()


@pytest.mark.parametrize(("value", "says"), [
    ([[0, 0], [1, 1]], "at least 3"),
    ("0,0 1,1 2,0", "at least 3"),
    ([[0, 0], [1, 1], [2]], "point 3"),
    ([[0, 0], [1, 1], [True, 0]], "point 3"),
    ([[0, 0], [10, 0], [-1, 5]], "point 3"),
    ([[0, 0], [10, 0], [float("nan"), 5]], "point 3"),
    ([[0, 0], [5, 5], [10, 10]], "no area"),
])
def test_bad_polygons_are_refused_naming_where(value, says: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_polygon(value, "cameras.yard.masks[0]")
    assert str(exc.value).startswith("cameras.yard.masks[0]: ") and says in str(exc.value)


def test_masks_and_zones_name_the_polygon_at_fault() -> None:
    good = [[0, 0], [10, 0], [0, 10]]
    with pytest.raises(ValueError, match=r"^cameras.c.masks\[1\]: "):
        parse_masks([good, [[0, 0]]], "cameras.c.masks")
    with pytest.raises(ValueError, match=r"^cameras.c.zones.bad name: "):
        parse_zones({"ok": good, "bad name": good}, "cameras.c.zones")
    with pytest.raises(ValueError, match=r"^cameras.c.zones.drive: "):
        parse_zones({"drive": [[0, 0], [1, 1]]}, "cameras.c.zones")
    assert parse_masks([good], "m") == (Polygon(((0, 0), (10, 0), (0, 10)), False),)
