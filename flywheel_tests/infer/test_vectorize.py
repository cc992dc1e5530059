"""Vectorizing a probability COG in strips: objects crossing strip boundaries come out whole,
installations group, specks drop, cells clip by centroid."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import MultiPolygon, Polygon, box

from flywheel_core.geo.projection import area_m2, reproject
from flywheel_core.imagery.cog import write_cog
from flywheel_core.infer.tiled import predict_raster
from flywheel_core.infer.vectorize import vectorize_probabilities
from flywheel_tests.infer.scenes import CRS, GSD, TRANSFORM, write_scene

PX_M2 = GSD * GSD
STRIP = 64  # read_rows in these tests: strip boundaries at rows 64, 128, 192


def _prob_cog(path, values: np.ndarray, transform: Affine = TRANSFORM, epsg: int = 32632):
    return write_cog(
        path,
        values.astype(np.uint8),
        epsg=epsg,
        transform=transform,
        descriptions=["pv_probability"],
        tags={"probability_scale": 1 / 255},
    )


def _px_box(c0: int, r0: int, c1: int, r1: int, transform: Affine = TRANSFORM) -> Polygon:
    x0, y0 = transform * (c0, r0)
    x1, y1 = transform * (c1, r1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def test_rectangle_across_strip_boundaries_is_one_polygon(tmp_path):
    rng = np.random.default_rng(0)
    p = np.zeros((256, 200), np.uint8)
    p[50:150, 20:60] = rng.integers(140, 256, size=(100, 40))  # rows 50..149: two boundaries
    p[150:152, 20:60] = 100  # below threshold: not part of it
    path = _prob_cog(tmp_path / "p.tif", p)
    dets = vectorize_probabilities(path, read_rows=STRIP)
    assert len(dets) == 1
    d = dets[0]
    assert isinstance(d.geometry_local, Polygon) and d.n_parts == 1
    assert d.area_m2 == pytest.approx(100 * 40 * PX_M2, rel=0.02)
    assert d.geometry_local.area == pytest.approx(100 * 40 * PX_M2)
    assert d.geometry_local.equals(_px_box(20, 50, 60, 150))
    assert d.n_pixels == 4000
    assert d.score == pytest.approx(p[50:150, 20:60].mean() / 255, abs=1e-6)
    assert d.max_score == pytest.approx(p[50:150, 20:60].max() / 255, abs=1e-6)
    # The lon/lat geometry is the local one reprojected, with (nearly) the same area.
    assert area_m2(d.geometry) == pytest.approx(d.area_m2, rel=0.01)
    assert d.geometry.centroid.distance(reproject(d.geometry_local.centroid, CRS, 4326)) < 1e-6
    # Reading the whole raster at once gives the same detection.
    (whole,) = vectorize_probabilities(path, read_rows=4096)
    assert whole.geometry_local.equals(d.geometry_local)
    assert whole.score == pytest.approx(d.score)


def test_shapes_joined_only_in_a_later_strip_are_one(tmp_path):
    """A 'U' whose arms are separate in the first strip and meet in the second, and a '∩' whose
    legs split again: each is one polygon (union-find across boundaries, transitively)."""
    p = np.zeros((200, 200), np.uint8)
    p[30:70, 10:20] = 220  # U: left arm, rows 30..69 (crosses row 64)
    p[30:70, 40:50] = 220  # U: right arm
    p[66:76, 10:50] = 220  # U: base, only below the boundary
    p[40:60, 100:160] = 220  # ∩: top bar, strip 0 only
    p[60:140, 100:110] = 220  # ∩: left leg, through rows 64 and 128
    p[60:140, 150:160] = 220  # ∩: right leg
    path = _prob_cog(tmp_path / "p.tif", p)
    dets = vectorize_probabilities(path, read_rows=STRIP)
    assert len(dets) == 2
    assert all(isinstance(d.geometry_local, Polygon) for d in dets)
    assert sorted(d.n_pixels for d in dets) == sorted(
        [int((p[:, :60] > 0).sum()), int((p[:, 60:] > 0).sum())]
    )
    for d in dets:
        assert d.area_m2 == pytest.approx(d.n_pixels * PX_M2)
        assert d.geometry_local.area == pytest.approx(d.n_pixels * PX_M2)


def test_threshold_is_inclusive_on_stored_levels(tmp_path):
    p = np.zeros((40, 60), np.uint8)
    p[5:15, 5:25] = 204  # exactly 0.8
    p[20:30, 30:50] = 203
    path = _prob_cog(tmp_path / "p.tif", p)
    (d,) = vectorize_probabilities(path, threshold=0.8)
    assert d.n_pixels == 200 and d.score == pytest.approx(0.8)
    assert len(vectorize_probabilities(path, threshold=203 / 255)) == 2


def _two_rows(tmp_path):
    """Two 20 x 6 m rectangles 3 m (6 px) apart, crossing the boundary at row 64, and specks."""
    p = np.zeros((200, 200), np.uint8)
    p[50:90, 20:32] = 200  # 40 x 12 px = 20 x 6 m
    p[50:90, 38:50] = 240  # 6 px gap = 3 m
    p[150:152, 150:152] = 255  # 4 px = 1 m²: a speck
    p[150:153, 100:103] = 255  # 9 px = 2.25 m²: kept
    return p, _prob_cog(tmp_path / "p.tif", p)


def test_parts_are_separate_without_grouping_and_specks_drop(tmp_path):
    _, path = _two_rows(tmp_path)
    dets = vectorize_probabilities(path, min_area_m2=2.0, read_rows=STRIP)
    assert sorted(round(d.area_m2, 3) for d in dets) == [2.25, 120.0, 120.0]
    assert all(d.n_parts == 1 for d in dets)
    assert len(vectorize_probabilities(path, min_area_m2=0.5, read_rows=STRIP)) == 4
    assert len(vectorize_probabilities(path, min_area_m2=3.0, read_rows=STRIP)) == 2


def test_group_distance_merges_parts_into_one_multipolygon(tmp_path):
    _, path = _two_rows(tmp_path)
    dets = vectorize_probabilities(path, group_distance_m=5.0, read_rows=STRIP)
    assert len(dets) == 2  # the installation, and the 2.25 m² blob 30+ m away
    inst = max(dets, key=lambda d: d.area_m2)
    assert isinstance(inst.geometry_local, MultiPolygon) and inst.n_parts == 2
    assert isinstance(inst.geometry, MultiPolygon)
    assert inst.area_m2 == pytest.approx(240.0)
    assert inst.n_pixels == 960
    assert inst.score == pytest.approx((480 * 200 + 480 * 240) / 960 / 255, abs=1e-6)
    assert inst.max_score == pytest.approx(240 / 255, abs=1e-6)
    # 3 m apart: a 2.9 m grouping distance keeps them apart.
    assert len(vectorize_probabilities(path, group_distance_m=2.9, read_rows=STRIP)) == 3


def test_clip_to_keeps_detections_by_centroid(tmp_path):
    p = np.zeros((120, 200), np.uint8)
    p[10:30, 10:90] = 230  # centroid at column 50: inside
    p[40:60, 80:120] = 230  # straddles column 100; centroid at column 100
    p[70:90, 150:190] = 230  # right: outside
    path = _prob_cog(tmp_path / "p.tif", p)
    cell = reproject(_px_box(0, 0, 101, 120), CRS, 4326)  # columns 0..100 (+1 px)
    dets = vectorize_probabilities(path, read_rows=32, clip_to=cell)
    # The left box and the straddling one (centroid column 100 < 101) are kept whole.
    assert len(dets) == 2
    straddling = max(dets, key=lambda d: d.geometry_local.bounds[2])
    assert straddling.geometry_local.equals(_px_box(80, 40, 120, 60))
    narrower = reproject(_px_box(0, 0, 99, 120), CRS, 4326)
    assert len(vectorize_probabilities(path, read_rows=32, clip_to=narrower)) == 1


def test_geographic_raster_areas(tmp_path):
    """EPSG:4326 rasters: areas from the equal-area projection, grouping in metres (UTM)."""
    t = Affine(5e-6, 0, 11.5, 0, -5e-6, 48.1)  # ~0.37 x 0.56 m px near Munich
    p = np.zeros((100, 100), np.uint8)
    p[10:50, 10:30] = 255
    p[10:50, 35:55] = 255  # 5 px ~ 1.9 m apart
    path = _prob_cog(tmp_path / "g.tif", p, transform=t, epsg=4326)
    dets = vectorize_probabilities(path, read_rows=16)
    assert len(dets) == 2
    for d in dets:
        assert d.area_m2 == pytest.approx(area_m2(d.geometry), rel=1e-9)
        px_w, px_h = 5e-6 * 111_320 * np.cos(np.radians(48.1)), 5e-6 * 111_200
        assert d.area_m2 == pytest.approx(800 * px_w * px_h, rel=0.01)
    grouped = vectorize_probabilities(path, read_rows=16, group_distance_m=2.5)
    assert len(grouped) == 1 and grouped[0].n_parts == 2


def test_tiled_prediction_then_vectorization(tmp_path):
    """End to end: a model that echoes band 1 over a scene holding a bright rectangle."""
    data = np.zeros((1, 300, 260), np.uint8)
    data[0, 100:180, 40:200] = 230
    src = write_scene(tmp_path / "s.tif", data)
    res = predict_raster(src, tmp_path / "p.tif", lambda b: b[:, :1], tile=64, overlap=16)
    (d,) = vectorize_probabilities(res.path, read_rows=128)
    assert d.geometry_local.equals(_px_box(40, 100, 200, 180))
    assert d.score == pytest.approx(230 / 255, abs=1e-6)
    with rasterio.open(res.path) as cog:
        assert cog.crs.to_string() == CRS
