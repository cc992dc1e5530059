"""Calibrated acceptance bounds: found from the round's own data, recorded, replayable."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel_core.flywheel.acceptance import AcceptanceRules
from flywheel_core.flywheel.calibration import (
    DEFAULTS,
    Calibration,
    LabelledChip,
    ObjectSpectra,
    ScoredObject,
    auc,
    calibrate,
    calibrate_min_area,
    calibrate_min_score,
    calibrate_vhr_pv_score,
    calibrate_water_pvi,
    group_objects,
    object_spectra,
    score_objects,
)

GSD = 0.3125


def _chip_with_panels(panel_dn, roof_dn, n=3, size=200, seed=0):
    """A (4, size, size) uint8 chip: roof everywhere, `n` panel rectangles, and their mask."""
    rng = np.random.default_rng(seed)
    image = np.empty((4, size, size), np.float32)
    image[:] = np.asarray(roof_dn, np.float32)[:, None, None]
    mask = np.zeros((size, size), bool)
    for k in range(n):
        y, x = 10 + 64 * k, 20  # 44 px (14 m) apart: three objects
        mask[y : y + 20, x : x + 30] = True
    image[:, mask] = np.asarray(panel_dn, np.float32)[:, None]
    image += rng.normal(0, 1.5, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def test_group_objects_joins_rows_within_the_grouping_distance():
    mask = np.zeros((200, 200), bool)
    mask[10:20, 10:150] = True  # two rows of one array, 4 px (1.25 m) apart
    mask[24:34, 10:150] = True
    mask[150:170, 150:170] = True  # far away: another object
    mask[100, 100] = True  # a speck below 2 m²: dropped
    objects = group_objects(mask, GSD)
    assert objects.max() == 2
    assert objects[15, 50] == objects[30, 50] != objects[160, 160]
    assert objects[100, 100] == 0


def test_score_objects_matches_one_to_one():
    mask = np.zeros((100, 100), bool)
    mask[10:30, 10:30] = True
    prob = np.zeros((100, 100), np.float32)
    prob[12:30, 10:30] = 0.9  # the labelled object, found
    prob[60:80, 60:80] = 0.7  # an object nobody labelled
    objects, n_ref = score_objects(prob, mask, GSD)
    assert n_ref == 1
    # the unlabelled object on a chip with labels may be a panel nobody labelled: not "known"
    assert sorted((round(o.score, 2), o.matched, o.known) for o in objects) == [
        (0.7, False, False),
        (0.9, True, True),
    ]
    on_negative, _ = score_objects(prob, np.zeros_like(mask), GSD)
    # on a label-free chip every object is a known false positive
    assert len(on_negative) == 2 and all(o.known and not o.matched for o in on_negative)


def test_min_score_maximises_f05_and_falls_back_with_little_evidence():
    objects = [ScoredObject(s, True) for s in (0.9, 0.85, 0.8, 0.95)]
    objects += [ScoredObject(s, False) for s in (0.55, 0.6, 0.62)]
    t = calibrate_min_score(objects, n_labelled=4, rows=["a", "b"])
    # every labelled object kept, every false one cut: the middle of the gap 0.62 .. 0.8
    assert t.value == pytest.approx(0.71) and t.evidence["gap"] == [0.62, 0.8]
    assert t.evidence["precision"] == 1.0 and t.evidence["recall"] == 1.0
    assert t.rows == ("a", "b") and "F0.5" in t.method
    few = calibrate_min_score(objects[:2], n_labelled=2)
    assert few.value == DEFAULTS["min_score"] and few.method.startswith("default")
    # Nothing matched at all: the validation chips say nothing about the score.
    blind = calibrate_min_score([ScoredObject(0.9, False)] * 5, n_labelled=5)
    assert blind.value == DEFAULTS["min_score"]


def test_min_score_stays_within_its_range():
    objects = [ScoredObject(s, True) for s in (0.99, 0.98, 0.99)]
    objects += [ScoredObject(0.97, False)] * 3
    assert calibrate_min_score(objects, n_labelled=3).value == pytest.approx(0.95)


def test_spectral_bound_follows_the_panels_and_switches_off_without_contrast():
    # Poly panels (bluer than red, dark in NIR) on red tile roofs: a clear contrast.
    spectra = []
    for i in range(4):
        image, mask = _chip_with_panels((55, 60, 80, 42), (120, 90, 60, 110), seed=i)
        spectra += object_spectra(f"chip-{i}", image, mask, GSD)
    assert len(spectra) == 12 and all(o.ring_score is not None for o in spectra)
    t = calibrate_vhr_pv_score(spectra)
    assert t.value is not None and t.evidence["auc"] > 0.95
    assert 30 < t.value <= min(o.score for o in spectra) + 1.0  # keeps ~95 % of them
    # Thin-film on dark roofs: the same score on panels and roofs; the rule says nothing here.
    flat = []
    for i in range(4):
        image, mask = _chip_with_panels((50, 50, 52, 40), (50, 50, 52, 40), seed=10 + i)
        flat += object_spectra(f"flat-{i}", image, mask, GSD)
    off = calibrate_vhr_pv_score(flat)
    assert off.value is None and "do not separate" in off.method
    assert calibrate_vhr_pv_score(spectra[:3]).value is None  # too few objects


def test_water_bound_never_rejects_a_labelled_object():
    objects = [ObjectSpectra("c", 20.0, 0.0, p) for p in (-0.6, -0.97, -0.7)]
    t = calibrate_water_pvi(objects)
    assert -1.0 < t.value < -0.97  # halfway to water, below the lowest labelled panel
    easy = calibrate_water_pvi([ObjectSpectra("c", 20.0, 0.0, -0.5)])
    assert easy.value == DEFAULTS["max_water_pvi"]  # never above the default
    assert calibrate_water_pvi([]).method.startswith("default")


def test_auc():
    assert auc([3, 4], [1, 2]) == 1.0 and auc([1], [1]) == 0.5 and auc([1, 2], [3]) == 0.0


def test_calibration_round_trips_and_applies_to_the_rules():
    image, mask = _chip_with_panels((55, 60, 80, 42), (120, 90, 60, 110))
    chips = [
        LabelledChip(f"c{i}", "train", image, mask, GSD, np.full((4, 4), -0.6, np.float32))
        for i in range(3)
    ]
    prob = mask.astype(np.float32) * 0.9
    val = [(f"v{i}", "val", prob, mask, GSD) for i in range(2)]
    cal = calibrate(chips, val, as_of="2024-06-01", lance_version=7)
    assert set(cal.thresholds) == {"min_score", "min_area_m2", "min_vhr_pv_score", "max_water_pvi"}
    again = Calibration.from_dict(cal.to_dict())
    assert again == cal and again.digest == cal.digest
    rules = cal.apply(AcceptanceRules(max_area_m2=900.0))
    assert rules.max_area_m2 == 900.0  # uncalibrated rules untouched
    assert rules.min_area_m2 == cal.thresholds["min_area_m2"].value
    assert rules.min_vhr_pv_score == cal.thresholds["min_vhr_pv_score"].value
    assert rules.max_water_pvi == cal.thresholds["max_water_pvi"].value
    assert cal.thresholds["min_score"].rows == ("v0", "v1")


def test_a_round_with_too_few_validation_objects_calibrates_on_train_chips_too():
    mask = np.zeros((100, 100), bool)
    mask[10:30, 10:30] = True
    good = mask.astype(np.float32) * 0.95
    fooled = np.zeros_like(good)
    fooled[60:80, 60:80] = 0.7  # a look-alike on a label-free chip, scored below the panels
    none = np.zeros_like(mask)
    outputs = [("v0", "val", good, mask, GSD)]
    outputs += [(f"t{i}", "train", good, mask, GSD) for i in range(3)]
    outputs += [(f"n{i}", "train", fooled, none, GSD) for i in range(3)]
    cal = calibrate([], outputs, as_of=None, lance_version=None)
    t = cal.thresholds["min_score"]
    assert 0.7 < t.value <= 0.95 and "train + validation" in t.method
    assert t.evidence["validation"]["labelled_objects"] == 1
    only_val = calibrate([], outputs[:1], as_of=None, lance_version=None)
    assert only_val.thresholds["min_score"].value == DEFAULTS["min_score"]


def test_min_area_follows_the_labelled_systems():
    def areas(*values):
        return {f"label-{i}": a for i, a in enumerate(values)}

    big = calibrate_min_area(areas(6.0, 20.0, 25.0, 30.0, 34.0, 40.0, 300.0), ["c0"])
    assert 10.0 < big.value < 12.0  # most collectors (4-12 m²) fall under it, and one small label
    # (a false label of an earlier round) does not drag it down
    assert big.evidence["smallest_m2"] == 6.0 and big.rows == ("c0",)
    tiny = calibrate_min_area(areas(3.0, 4.0, 5.0, 6.0, 7.0))
    assert tiny.value == DEFAULTS["min_area_m2"]  # never below the default
    few = calibrate_min_area(areas(30.0, 40.0))
    assert few.value == DEFAULTS["min_area_m2"] and few.method.startswith("default")


def test_a_system_across_chips_counts_whole():
    image, mask = _chip_with_panels((55, 60, 80, 42), (120, 90, 60, 110))

    def chip(uid, areas, day="2024-05-01"):
        return LabelledChip(uid, "train", image, mask, GSD, None, areas, day)

    halves = [chip(f"c{i}", {"farm": 500.0, f"roof{i}": 30.0}) for i in range(2)]
    # the next month's chips show the same systems again: counted once, not twice
    later = [chip(f"d{i}", {"farm": 500.0, f"roof{i}": 30.0}, "2024-06-01") for i in range(2)]
    cal = calibrate(halves + later, [], as_of=None, lance_version=None)
    t = cal.thresholds["min_area_m2"]
    # three systems: the farm (2 x 500 m²) and two roofs; the quartile lies between the roofs
    assert t.evidence["objects"] == 3 and t.value == pytest.approx(0.5 * 30.0)
    assert t.rows == ("c0", "c1", "d0", "d1")


def test_objects_the_area_rule_rejects_do_not_raise_the_score_bound():
    mask = np.zeros((100, 100), bool)
    mask[10:40, 10:40] = True  # a 9 x 9 m array
    panel = mask.astype(np.float32) * 0.95
    collector = np.zeros_like(panel)
    collector[60:66, 60:66] = 0.9  # a confident 3.5 m² look-alike on a label-free chip
    outputs = [(f"v{i}", "val", panel, mask, GSD) for i in range(3)]
    outputs += [(f"n{i}", "val", collector, np.zeros_like(mask), GSD) for i in range(3)]
    strict = _min_score_of(outputs, None)
    assert strict.value == pytest.approx(0.925)  # the middle of the gap 0.9 .. 0.95
    lenient = _min_score_of(outputs, 10.0)  # the area rule cuts the collectors anyway
    assert lenient.value < 0.9 and lenient.evidence["predicted_objects"] == 3


def _min_score_of(outputs, min_area):
    from flywheel_core.flywheel.calibration import _min_score, scored_chips

    return _min_score(scored_chips(outputs), min_area)


def test_the_area_bound_follows_the_models_outline():
    """A model that draws its objects at 70 % of the labelled masks' area moves the area bound
    by the same factor: the rule reads the model's outline, not the mask's."""
    from flywheel_core.flywheel.calibration import (
        calibrate_min_area,
        outline_ratio,
        scored_chips,
    )

    mask = np.zeros((100, 100), bool)
    mask[10:40, 10:40] = True  # a 9 x 9 m labelled array (81 m²)
    tight = np.zeros((100, 100), np.float32)
    tight[12:37, 12:37] = 0.9  # the model's outline: 25 x 25 px of 30 x 30
    scored = scored_chips([(f"v{i}", "val", tight, mask, GSD) for i in range(3)])
    ratio, pairs = outline_ratio(scored["val"][0])
    assert pairs == 3 and ratio == pytest.approx(625 / 900)
    areas = {"a": 40.0, "b": 60.0, "c": 80.0, "d": 100.0}
    plain = calibrate_min_area(areas)
    scaled = calibrate_min_area(areas, outline=(ratio, pairs))
    assert plain.value == pytest.approx(0.5 * 55.0)
    assert scaled.value == pytest.approx(0.5 * 55.0 * 625 / 900, abs=0.01)
    assert scaled.evidence["outline_ratio"] == pytest.approx(0.694, abs=1e-3)
    # too few matched objects: no scaling; a wild ratio is clipped
    assert outline_ratio(scored["val"][0][:2]) == (1.0, 2)
    blob = np.zeros((100, 100), np.float32)
    blob[5:45, 5:45] = 0.9  # looser than the mask: clipped to 1
    assert outline_ratio(scored_chips([("w", "val", blob, mask, GSD)] * 3)["val"][0])[0] == 1.0
