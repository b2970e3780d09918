"""Polygons on a camera's picture: the masks and zones of ``[cameras.NAME]`` in camwire.toml.

A polygon is written as a list of at least 3 ``[x, y]`` points, either all in pixels of the
source frame or all fractions of its width and height. Which of the two is decided per polygon:
when every coordinate lies in [0, 1] and at least one is written as a float (with a decimal
point: ``0.5``, ``1.0``), the polygon is in fractions and fits any frame size; otherwise in
pixels. So ``[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]`` is the left half of any frame,
and ``[[0, 0], [640, 0], [640, 360]]`` a triangle in pixels. Points go round the polygon in
order (either way round); ``x`` grows rightwards and ``y`` downwards, from the top-left corner.

``contains`` counts a point on the boundary (an edge or a corner) as inside: a box whose
bottom-centre lies exactly on a zone's edge is in the zone, and one on a mask's edge is masked.

Pure numpy: the config loader (which every daemon runs, the ventilator too) never loads OpenCV;
only ``mask_image`` does, when it is called (the extractor's motion detector).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

MAX_POINTS = 1000  # a polygon drawn by hand has tens; this bounds a typo or a generated file
MAX_POLYGONS = 100  # masks per camera, zones per camera
ZONE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EPS = 1e-9  # how far (relative to the polygon's size) from an edge a point still lies on it

Box = Sequence[float]  # [x1, y1, x2, y2] in source pixels


@dataclass(frozen=True, slots=True)
class Polygon:
    """A polygon as written: its coordinates, and whether they are fractions of the frame."""

    coords: tuple[tuple[float, float], ...]
    fractions: bool

    def points(self, width: int, height: int) -> np.ndarray:
        """The points in pixels of a ``width`` x ``height`` frame, as an (N, 2) float array."""
        pts = np.asarray(self.coords, dtype=np.float64)
        if self.fractions:
            pts = pts * np.array([width, height], dtype=np.float64)
        return pts

    def to_list(self) -> list[list[float]]:
        """As written (ints stay ints), for check-config and for a flag that carries it again."""
        return [[x, y] for x, y in self.coords]


def parse_polygon(value: Any, where: str) -> Polygon:
    """A polygon from camwire.toml (or a flag's JSON); ValueError starting with ``where``."""
    if not isinstance(value, (list, tuple)) or len(value) < 3:
        raise ValueError(f"{where}: a polygon is a list of at least 3 [x, y] points")
    if len(value) > MAX_POINTS:
        raise ValueError(f"{where}: at most {MAX_POINTS} points, not {len(value)}")
    coords: list[tuple[float, float]] = []
    any_float = False
    for i, point in enumerate(value):
        if (not isinstance(point, (list, tuple)) or len(point) != 2
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in point)):
            raise ValueError(f"{where}: point {i + 1} is {point!r}, not [x, y] (two numbers)")
        if not all(math.isfinite(c) and 0 <= c <= 1e6 for c in point):
            raise ValueError(f"{where}: point {i + 1} is {point!r}: coordinates are from 0 (the top-left "
                             f"corner) to the frame's size")
        any_float = any_float or any(isinstance(c, float) for c in point)
        coords.append((point[0], point[1]))
    fractions = any_float and all(c <= 1.0 for point in coords for c in point)
    pts = np.asarray(coords, dtype=np.float64)
    if _area2(pts) == 0.0:
        raise ValueError(f"{where}: the points enclose no area (on one line, or a figure 8 with equal loops)")
    return Polygon(tuple(coords), fractions)


def parse_masks(value: Any, where: str) -> tuple[Polygon, ...]:
    """``masks = [[[x, y], ...], ...]``: a list of polygons."""
    if not isinstance(value, list):
        raise ValueError(f"{where}: a list of polygons, each a list of [x, y] points")
    if len(value) > MAX_POLYGONS:
        raise ValueError(f"{where}: at most {MAX_POLYGONS} masks, not {len(value)}")
    return tuple(parse_polygon(p, f"{where}[{i}]") for i, p in enumerate(value))


def parse_zones(value: Any, where: str) -> dict[str, Polygon]:
    """``zones = {driveway = [[x, y], ...]}``: named polygons (names as camera names)."""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: a table of named polygons, e.g. zones = {{driveway = [[0, 0], ...]}}")
    if len(value) > MAX_POLYGONS:
        raise ValueError(f"{where}: at most {MAX_POLYGONS} zones, not {len(value)}")
    zones = {}
    for name, polygon in value.items():
        if not ZONE_NAME.fullmatch(name):
            raise ValueError(f"{where}.{name}: a zone name is 1 to 64 of A-Z a-z 0-9 _ -")
        zones[name] = parse_polygon(polygon, f"{where}.{name}")
    return zones


def contains(points: np.ndarray, x: float, y: float) -> bool:
    """Whether (x, y) is inside the polygon ``points`` (pixels, as ``Polygon.points`` gives);
    a point on an edge or a corner counts as inside. Even-odd rule for self-crossing ones."""
    pts = np.asarray(points, dtype=np.float64)
    a, b = pts, np.roll(pts, -1, axis=0)
    size = max(1.0, float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])))
    # on an edge: collinear with it (cross product ~0) and within its extent
    cross = (b[:, 0] - a[:, 0]) * (y - a[:, 1]) - (b[:, 1] - a[:, 1]) * (x - a[:, 0])
    length = np.hypot(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1])
    within = ((np.minimum(a[:, 0], b[:, 0]) - EPS * size <= x) & (x <= np.maximum(a[:, 0], b[:, 0]) + EPS * size)
              & (np.minimum(a[:, 1], b[:, 1]) - EPS * size <= y) & (y <= np.maximum(a[:, 1], b[:, 1]) + EPS * size))
    if np.any(within & (np.abs(cross) <= EPS * size * np.maximum(length, 1.0))):
        return True
    # a ray to the right: count the edges it crosses (each edge half-open in y, so a vertex counts once)
    straddles = (a[:, 1] > y) != (b[:, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    return bool(np.count_nonzero(straddles & (x < x_at)) % 2)


def bottom_centre(box: Box) -> tuple[float, float]:
    """Where an object in ``box`` ([x1, y1, x2, y2]) stands: the middle of its bottom edge."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return (x1 + x2) / 2, max(y1, y2)


def mask_image(polygons: Iterable[Polygon], width: int, height: int) -> np.ndarray:
    """A ``height`` x ``width`` uint8 image: 255 inside any of ``polygons`` (edges included), else 0."""
    import cv2  # only the extractor's motion detector draws masks

    image = np.zeros((height, width), np.uint8)
    shapes = [np.round(p.points(width, height)).astype(np.int32) for p in polygons]
    if shapes:
        cv2.fillPoly(image, shapes, 255)
        cv2.polylines(image, shapes, True, 255)  # the boundary is masked too, as ``contains`` says
    return image


def zones_of(box: Box, zones: Mapping[str, Polygon], width: int, height: int) -> list[str]:
    """The names of the zones (in their order) that hold ``box``'s bottom-centre."""
    x, y = bottom_centre(box)
    return [name for name, polygon in zones.items() if contains(polygon.points(width, height), x, y)]


def _area2(pts: np.ndarray) -> float:
    """Twice the polygon's signed area (shoelace), as its absolute value."""
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
