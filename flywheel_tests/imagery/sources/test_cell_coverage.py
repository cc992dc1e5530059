"""`cell_coverage`: the share of a cell a scene footprint covers."""

from __future__ import annotations

from shapely.affinity import translate
from shapely.geometry import box

from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.imagery.sources.types import cell_coverage

# A cell whose polygon, intersected with a larger footprint, measures 1.0000000000000002 of itself
ROUNDING_CELL = "5a3d26a04"


def test_a_footprint_over_the_whole_cell_covers_exactly_all_of_it():
    area = cell_polygon(ROUNDING_CELL)
    assert area.buffer(1e-3).intersection(area).area / area.area > 1.0  # the float it guards
    assert cell_coverage(area.buffer(1e-3), ROUNDING_CELL) == 1.0
    assert cell_coverage(area.envelope, ROUNDING_CELL) == 1.0


def test_part_of_the_cell_and_none_of_it():
    area = cell_polygon(ROUNDING_CELL)
    x0, y0, x1, y1 = area.bounds
    west = box(x0, y0, (x0 + x1) / 2, y1)
    assert 0.4 < cell_coverage(west, ROUNDING_CELL) < 0.6
    assert cell_coverage(translate(area, xoff=1.0), ROUNDING_CELL) == 0.0
