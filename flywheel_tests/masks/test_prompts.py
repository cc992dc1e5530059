from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Point, box

from flywheel_core.masks.prompts import PromptSettings, chip_prompts
from flywheel_tests.masks.conftest import GSD, label_row


def test_polygon_round_trips_into_the_chip_pixel_grid(chip):
    poly = box(50.0, 60.0, 90.0, 80.0)
    (p,) = chip_prompts([label_row("a", poly, chip)], chip, PromptSettings())
    assert p.kind == "polygon" and p.source_geometry == "polygon" and not p.clipped
    assert p.region.symmetric_difference(poly).area < 0.5  # < half a pixel after reprojection
    assert p.box == pytest.approx((50, 60, 90, 80), abs=0.05)
    assert poly.contains(Point(*p.points[0])) and p.point_labels.tolist() == [1]


def test_labels_crossing_the_edge_are_clipped(chip):
    (p,) = chip_prompts(
        [label_row("a", box(240.0, 10.0, 300.0, 40.0), chip)], chip, PromptSettings()
    )
    assert p.clipped
    assert p.box[2] <= 256.0 + 1e-6
    assert p.region.area == pytest.approx(16 * 30, rel=0.02)


def test_point_labels_become_boxes_of_the_buffer(chip):
    (p,) = chip_prompts(
        [label_row("pt", Point(128.0, 128.0), chip)], chip, PromptSettings(point_buffer_m=4.0)
    )
    assert p.kind == "box" and p.source_geometry == "point"
    side = 2 * 4.0 / GSD
    assert p.box[2] - p.box[0] == pytest.approx(side, abs=0.5)
    assert p.points.shape == (1, 2)
    assert p.points[0].tolist() == pytest.approx([128.0, 128.0], abs=0.05)


def test_negative_points_fall_outside_the_polygon(chip):
    poly = box(100.0, 100.0, 140.0, 130.0)
    settings = PromptSettings(positive_points=3, negative_points=4)
    (p,) = chip_prompts([label_row("a", poly, chip)], chip, settings)
    pos, neg = p.points[p.point_labels == 1], p.points[p.point_labels == 0]
    assert len(pos) == 3 and len(neg) == 4
    assert all(poly.contains(Point(*xy)) for xy in pos)
    assert not any(poly.buffer(0.5).contains(Point(*xy)) for xy in neg)
    assert all(0 <= x <= 256 and 0 <= y <= 256 for x, y in neg)


def test_box_prompt_kind_and_far_labels(chip):
    labels = [
        label_row("a", box(10.0, 10.0, 20.0, 20.0), chip),
        label_row("far", box(900.0, 900.0, 950.0, 950.0), chip),
    ]
    prompts = chip_prompts(labels, chip, PromptSettings(polygon_kind="box"))
    assert [p.label_id for p in prompts] == ["a"]
    assert prompts[0].kind == "box"
    assert np.all(prompts[0].point_labels == 1)
