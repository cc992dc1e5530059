from __future__ import annotations

import pytest
from shapely.geometry import Point, box

from flywheel_core.geo import s2


def test_cell_contains_its_point_and_has_the_level():
    token = s2.cell_from_lonlat(11.58, 48.14, 15)
    assert s2.cell_level(token) == 15
    assert s2.cell_polygon(token).contains(Point(11.58, 48.14))


def test_level_15_cells_are_about_300_m():
    assert 250 < s2.cell_edge_m(15) < 320


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("zz", "not an S2 cell token"),
        ("479E758C4", "not an S2 cell token"),
        ("0", "not a valid S2 cell id"),
        ("479e758c40", "not canonical"),
        ("479e75", "level 15"),
    ],
)
def test_bad_tokens_say_why(token, message):
    with pytest.raises(s2.InvalidCellError, match=message):
        s2.parse_token(token, 15)


def test_swapped_coordinates_are_caught():
    with pytest.raises(s2.InvalidCellError, match="swap"):
        s2.cell_from_lonlat(48.14, 148.0, 15)


def test_parent_nests():
    token = s2.cell_from_lonlat(11.58, 48.14, 15)
    parent = s2.parent_token(token, 13)
    assert s2.cell_polygon(parent).contains(s2.cell_polygon(token).centroid)
    assert s2.cell_from_lonlat(11.58, 48.14, 13) == parent


def test_covering_includes_every_touched_cell_not_only_the_centroid():
    token = s2.cell_from_lonlat(11.58, 48.14, 15)
    poly = s2.cell_polygon(token)
    (x0, y0), (x1, y1) = poly.exterior.coords[0], poly.exterior.coords[1]
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2  # midpoint of an edge: the box crosses into a neighbour
    straddle = box(mx - 0.0003, my - 0.0003, mx + 0.0003, my + 0.0003)
    cells = s2.covering(straddle, 15)
    assert len(cells) >= 2
    assert all(s2.cell_polygon(c).intersects(straddle) for c in cells)


def test_cells_around_are_distinct_neighbours():
    cells = s2.cells_around(11.58, 48.14, 15, 4)
    assert len(set(cells)) == 4
    first = s2.cell_polygon(cells[0])
    assert all(s2.cell_polygon(c).distance(first) < 0.001 for c in cells[1:])
