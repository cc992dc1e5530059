from __future__ import annotations

import math
import re

import pytest
import shapely

from flywheel_core.flywheel.acceptance import AcceptanceRules, ActiveLabels, Detection, decide
from flywheel_tests.flywheel.shapes import box_m, point_m, square

CLEAN = box_m(0, 0, 20, 10)


def det(geometry=CLEAN, score=0.9, **kw):
    return Detection(geometry=geometry, score=score, **kw)


def test_clean_detection_is_accepted():
    d = decide(det(), [], -0.74)
    assert d.accepted and d.reason == "accepted" and d.rule is None
    # Measured in metres (the squares are laid out with a spherical approximation: ±0.5 %).
    assert d.metrics["area_m2"] == pytest.approx(200, rel=5e-3)
    assert d.metrics["rectangularity"] == pytest.approx(1.0, rel=1e-3)
    assert d.metrics["min_width_m"] == pytest.approx(10, rel=5e-3)
    # As a dict with WKB, as the backfill passes it; MSI evidence may be missing.
    raw = {"geometry": shapely.to_wkb(CLEAN), "score": 0.9, "area_m2": 200.0}
    assert decide(raw, [], None).accepted
    assert decide(raw, [], math.nan).accepted


def test_score_rule():
    d = decide(det(score=0.3), [], None)
    assert (d.accepted, d.rule) == (False, "score")
    assert d.reason == "score: 0.300 < min_score 0.6"


@pytest.mark.parametrize(
    ("geometry", "pattern"),
    [
        (square(0, 0, 1.5), r"^area: 2\.\d m² < min_area_m2 4$"),
        (square(0, 0, 300), r"^area: (89|90)\d{3}\.\d m² > max_area_m2 50000$"),
    ],
)
def test_area_rule(geometry, pattern):
    d = decide(det(geometry), [], None)
    assert (d.accepted, d.rule) == (False, "area")
    assert re.match(pattern, d.reason), d.reason


def test_shape_rules():
    plus = box_m(0, 13.5, 30, 16.5).union(
        box_m(13.5, 0, 16.5, 30)
    )  # arms 3 m wide; its tightest rectangle is tilted 45°
    d = decide(det(plus), [], None)
    assert (d.accepted, d.rule) == (False, "shape")
    assert "rectangularity 0.31 < min_rectangularity 0.4" in d.reason
    streak = box_m(0, 0, 40, 0.5)
    d = decide(det(streak), [], None)
    assert (d.accepted, d.rule) == (False, "shape")
    assert "width 0.50 m < min_width_m 1" in d.reason
    # An L-shaped array (fills 0.5 of its rectangle) is fine; a stray pixel-sized part is
    # not judged.
    ell = box_m(0, 0, 20, 5).union(box_m(0, 0, 5, 15))
    assert decide(det(ell), [], None).accepted
    with_speck = shapely.MultiPolygon([CLEAN, box_m(30, 0, 30.3, 0.3)])
    assert decide(det(with_speck), [], None).accepted


def test_msi_rule_rejects_water_only_by_default():
    d = decide(det(), [], -1.0)
    assert (d.accepted, d.rule) == (False, "msi_pvi")
    assert d.reason == "msi_pvi: water-like, -1.000 <= max_water_pvi -0.95"
    # Ground-mounted PV at 10 m (NDPVI ≈ -0.74) and even grass pass the default rules.
    assert decide(det(), [], -0.74).accepted
    assert decide(det(), [], -0.93).accepted
    strict = AcceptanceRules(min_msi_pvi=-0.9)
    d = decide(det(), [], -0.93, strict)
    assert (d.accepted, d.rule) == (False, "msi_pvi")
    assert "vegetation-like, -0.930 < min_msi_pvi -0.9" in d.reason
    assert decide(det(), [], -0.74, strict).accepted


def test_overlap_rule():
    same = box_m(1, 0, 21, 10)  # IoU 190 / 210 with CLEAN
    d = decide(det(), ActiveLabels([same], ["seed-1"]), None)
    assert (d.accepted, d.rule) == (False, "already_labeled")
    assert "IoU 0.90" in d.reason and "seed-1" in d.reason
    # Small detection inside a large label: IoU low, but all of it is inside.
    big = box_m(-50, -50, 100, 100)
    d = decide(det(), [big], None)
    assert d.rule == "already_labeled" and "100% inside" in d.reason
    assert d.metrics["overlap_iou"] < 0.1
    # A point label the detection covers.
    d = decide(det(), ActiveLabels([point_m(5, 5)], ["pt"]), None)
    assert d.rule == "already_labeled" and "point label pt" in d.reason
    # Touching or slightly overlapping neighbours are not the same installation.
    neighbour = box_m(19, 0, 39, 10)  # IoU 10/390, 5 % of the detection
    assert decide(det(), [neighbour, point_m(100, 100)], None).accepted


def test_first_failed_rule_is_named():
    d = decide(det(square(0, 0, 1), score=0.1), [square(0, 0, 1)], -1.0)
    assert d.rule == "score"
    # Every number is still measured for the log.
    assert {"area_m2", "rectangularity", "overlap_iou", "msi_pvi"} <= set(d.metrics)


def test_vhr_spectral_rule_rejects_grey_roofs():
    geom = square(0, 0, 10)
    calibrated = AcceptanceRules(min_vhr_pv_score=15.0)  # a round's calibrated bound
    grey = decide(Detection(geom, 0.9, vhr_pv_score=9.3), [], None, calibrated)
    assert not grey.accepted and grey.rule == "vhr_spectra" and "9.3 DN" in grey.reason
    assert decide(Detection(geom, 0.9, vhr_pv_score=24.0), [], None, calibrated).accepted
    # no VHR score: rule not applied
    assert decide(Detection(geom, 0.9), [], None, calibrated).accepted
    # off by default: the bound depends on the imagery, so only a calibration sets it
    assert AcceptanceRules().min_vhr_pv_score is None
    assert decide(Detection(geom, 0.9, vhr_pv_score=1.0), [], None).accepted
