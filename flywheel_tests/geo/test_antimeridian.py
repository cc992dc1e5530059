"""Cells, coverings, areas and buffers at the antimeridian and in batch form.

The batch (numpy) forms must give exactly what the one-at-a-time s2sphere / pyproj forms give,
everywhere on the globe; and nothing near lon ±180 may come out as a shape around the world.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon

from flywheel_core.geo import antimeridian, s2
from flywheel_core.geo.projection import area_m2, areas_m2, point_buffers_m
from flywheel_core.geo.s2_arrays import cells_from_lonlat, coverings

GEOD = Geod(ellps="WGS84")
RNG = np.random.default_rng(11)


@pytest.mark.parametrize("lat", [-60.0, -16.8, 0.001, 30.0, 50.0, 80.0])
@pytest.mark.parametrize("lon", [179.9999, -179.9999])
def test_cells_on_the_date_line_are_small_and_contain_their_point(lon: float, lat: float) -> None:
    token = s2.cell_from_lonlat(lon, lat, 15)
    polygon = s2.cell_polygon(token)
    xmin, _, xmax, _ = polygon.bounds
    assert xmax - xmin < 0.05  # not a band around the globe
    footprint = s2.cell_footprint(token)
    assert footprint.contains(Point(lon, lat))
    assert footprint.bounds[0] >= -180.0 and footprint.bounds[2] <= 180.0
    assert shapely.area(footprint) == pytest.approx(shapely.area(polygon), rel=1e-9)


def test_batch_cells_match_s2sphere_everywhere() -> None:
    lon = np.concatenate(
        [RNG.uniform(-180, 180, 4000), [180.0, -180.0, 179.9999, -179.9999, 0.0, 45.0, -135.0]]
    )
    lat = np.concatenate([RNG.uniform(-90, 90, 4000), [0.0, 0.0, -16.8, -16.8, 90.0, 0.0, -90.0]])
    for level in (0, 7, 15, 30):
        got = cells_from_lonlat(lon, lat, level)
        want = [s2.cell_from_lonlat(x, y, level) for x, y in zip(lon, lat, strict=True)]
        assert list(got) == want


def test_batch_coverings_match_the_exact_covering() -> None:
    n = 600
    lon = np.concatenate([RNG.uniform(-179.9, 179.8, n), RNG.uniform(179.95, 179.999, 50)])
    lat = np.concatenate([RNG.uniform(-80, 80, n), RNG.uniform(-60, 60, 50)])
    size = RNG.uniform(2e-5, 3e-3, len(lon))  # from a roof to beyond a level-15 cell
    boxes = shapely.box(lon, lat, lon + size, lat + size * 0.6)
    got = coverings(boxes, 15, s2.covering)
    assert got == [s2.covering(b, 15) for b in boxes]


def test_batch_areas_match_the_projected_area() -> None:
    lon, lat = RNG.uniform(-179, 179, 300), RNG.uniform(-75, 75, 300)
    boxes = shapely.box(lon, lat, lon + 3e-4, lat + 2e-4)
    centres = shapely.centroid(boxes)
    got = areas_m2(boxes, shapely.get_x(centres), shapely.get_y(centres))
    want = np.array([area_m2(b) for b in boxes])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_point_buffers_are_geodesic_circles_even_across_the_line() -> None:
    lon = np.array([13.405, 179.99998, -179.99998, 0.0])
    lat = np.array([52.52, -16.8, 65.0, 0.0])
    circles = antimeridian.normalize_rings(point_buffers_m(lon, lat, 5.0))
    for x, y, circle in zip(lon, lat, circles, strict=True):
        xs, ys = shapely.get_coordinates(circle).T
        _, _, dist = GEOD.inv(np.full(xs.size, x), np.full(ys.size, y), xs, ys)
        on_ring = np.abs(xs) < 180.0  # vertices on ±180 are the cut, inside the circle
        assert np.allclose(dist[on_ring], 5.0, atol=1e-6) and (dist <= 5.0 + 1e-6).all()
        assert circle.intersects(Point(x, y).buffer(1e-9))
    assert isinstance(circles[1], MultiPolygon) and isinstance(circles[2], MultiPolygon)
    assert isinstance(circles[0], Polygon)


def test_a_polygon_across_the_line_is_measured_as_one_shape_and_stored_split() -> None:
    ring = Polygon([(179.9, -16.8), (-179.9, -16.8), (-179.9, -16.7), (179.9, -16.7)])
    assert antimeridian.crosses(ring)
    unwrapped = antimeridian.unwrap(ring)
    assert unwrapped.bounds == pytest.approx((179.9, -16.8, 180.1, -16.7))
    stored = antimeridian.split(unwrapped)
    assert isinstance(stored, MultiPolygon) and len(stored.geoms) == 2
    assert stored.bounds == pytest.approx((-180.0, -16.8, 180.0, -16.7))
    assert antimeridian.crosses(stored)  # the split form is recognised as well
    assert antimeridian.unwrap(stored).equals(unwrapped)
    box = antimeridian.stored_bounds(np.array([stored], dtype=object))[0]
    assert tuple(box) == pytest.approx((179.9, -16.8, -179.9, -16.7))  # xmin > xmax: crosses
    assert antimeridian.lon_ranges(box[0], box[2]) == [(179.9, 180.0), (-180.0, box[2])]
    # A wide polygon that does not jump (edges < 180°) is left alone.
    wide = Polygon([(-100, 0), (0, 0), (100, 0), (100, 1), (0, 1), (-100, 1)])
    assert not antimeridian.crosses(wide)


def test_covering_of_a_split_polygon_stays_on_the_line() -> None:
    stored = antimeridian.split(
        antimeridian.unwrap(
            Polygon([(179.998, 10.0), (-179.998, 10.0), (-179.998, 10.002), (179.998, 10.002)])
        )
    )
    cells = s2.covering(stored, 15)
    assert 2 <= len(cells) <= 12
    for token in cells:
        lon, _ = s2.cell_center(token)
        assert abs(abs(lon) - 180.0) < 0.01
    assert cells == coverings(np.array([stored], dtype=object), 15, s2.covering)[0]
