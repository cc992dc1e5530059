from __future__ import annotations

import json

import pytest

from flywheel_core.flywheel.matching import match
from flywheel_core.flywheel.metrics import compute_metrics
from flywheel_tests.flywheel.shapes import box_m, multi, square


def test_perfect_match():
    refs = [square(0, 0, 10), square(50, 0, 20), square(0, 60, 15)]
    m = compute_metrics(list(reversed(refs)), refs)
    assert (m.tp, m.fp, m.fn) == (3, 0, 0)
    assert m.precision == m.recall == m.f1 == 1.0
    assert m.pixel_iou == pytest.approx(1.0)
    assert m.pixel_f1 == pytest.approx(1.0)
    assert m.area_rel_error == pytest.approx(0.0, abs=1e-9)
    assert m.ref_area_m2 == pytest.approx(100 + 400 + 225, rel=1e-3)  # metres, not degrees
    json.dumps(m.as_dict())  # serializable as is


def test_half_overlap_is_below_threshold():
    pred, ref = square(5, 0, 10), square(0, 0, 10)  # IoU = 50 / 150
    result = match([pred], [ref])
    assert result.matches == ()
    assert result.unmatched_pred == (0,) and result.unmatched_ref == (0,)
    low = match([pred], [ref], iou_threshold=0.3)
    assert low.matches[0].iou == pytest.approx(1 / 3, rel=1e-3)
    m = compute_metrics([pred], [ref])
    assert (m.tp, m.fp, m.fn) == (0, 1, 1)
    assert m.precision == m.recall == m.f1 == 0.0
    assert m.pixel_iou == pytest.approx(1 / 3, rel=1e-3)
    assert m.pixel_f1 == pytest.approx(0.5, rel=1e-3)
    assert m.area_rel_error is None  # nothing matched


def test_multipolygon_is_one_object():
    ref = multi(square(0, 0, 10), square(30, 0, 10))  # one installation in two parts
    pred = multi(square(0.5, 0, 10), square(30.5, 0, 10))
    m = compute_metrics([pred], [ref])
    assert (m.n_pred, m.n_ref, m.tp) == (1, 1, 1)
    assert m.f1 == 1.0
    assert m.mean_matched_iou == pytest.approx(9.5 / 10.5, rel=1e-3)
    # Either half alone covers half the installation: IoU 0.5 at best, one object at most.
    halves = compute_metrics([square(0, 0, 10), square(30, 0, 10)], [ref])
    assert (halves.tp, halves.fp, halves.fn) == (1, 1, 0)


def test_greedy_highest_iou_first():
    ref = square(0, 0, 10)
    good, fair = square(0.2, 0, 10), square(2, 0, 10)
    result = match([fair, good], [ref])
    assert [(x.pred, x.ref) for x in result.matches] == [(1, 0)]
    # Two references, one prediction between them: matched once, to the better one.
    result = match([square(1, 0, 10)], [square(0, 0, 10), square(3, 0, 10)])
    assert [(x.pred, x.ref) for x in result.matches] == [(0, 0)]


def test_area_error_sign():
    ref = square(0, 0, 10)
    big = compute_metrics([square(0, 0, 11)], [ref])  # IoU 100/121, matched
    small = compute_metrics([square(0, 0, 9)], [ref])
    assert big.tp == small.tp == 1
    assert big.area_rel_error == pytest.approx(0.21, rel=1e-2)
    assert small.area_rel_error == pytest.approx(-0.19, rel=1e-2)
    assert big.total_area_rel_error == pytest.approx(0.21, rel=1e-2)


def test_empty_sets():
    none = compute_metrics([], [square(0, 0, 10)])
    assert (none.precision, none.recall, none.f1, none.pixel_iou) == (None, 0.0, 0.0, 0.0)
    nothing = compute_metrics([], [])
    assert nothing.f1 is None and nothing.pixel_iou is None
    fp_only = compute_metrics([box_m(0, 0, 5, 8)], [])
    assert (fp_only.precision, fp_only.recall, fp_only.fp) == (0.0, None, 1)
