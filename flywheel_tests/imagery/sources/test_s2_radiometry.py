"""Which L2A offset the metadata implies, and when the pixels overrule it."""

from datetime import date

import numpy as np

from flywheel_core.imagery.sources.s2_radiometry import (
    L2ARadiometry,
    check_dark_pixels,
    from_metadata,
)


def test_metadata_rules_in_order():
    c1 = {"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}
    assert from_metadata({}, c1, None).offset_dn == -1000.0
    applied = {"earthsearch:boa_offset_applied": True, "s2:processing_baseline": "05.09"}
    assert from_metadata(applied, None, None).offset_dn == 0.0
    assert from_metadata({"s2:processing_baseline": "04.00"}, None, None).offset_dn == -1000.0
    assert from_metadata({"s2:processing_baseline": "03.01"}, None, None).offset_dn == 0.0
    assert from_metadata({}, None, date(2022, 1, 25)).offset_dn == -1000.0
    assert from_metadata({}, None, date(2022, 1, 24)).offset_dn == 0.0
    rad = from_metadata({}, c1, None)
    np.testing.assert_allclose(rad.reflectance(np.array([1000, 2500, 0])), [0.0, 0.15, np.nan])


def test_dark_pixels_overrule_an_offset_they_cannot_carry():
    stated = L2ARadiometry(-1000.0, 10000.0, "s2:processing_baseline 04.00")
    water = np.r_[np.full(50, 150), np.full(950, 2500)]  # dark water without the +1000
    fixed = check_dark_pixels(stated, water)
    assert fixed.offset_dn == 0.0 and "pixel check" in fixed.rule
    carried = water + 1000  # the same scene with the offset in its DNs
    assert check_dark_pixels(stated, carried) == stated
    bright = np.full(1000, 3000)  # no dark pixel: nothing to tell, the metadata stands
    assert check_dark_pixels(stated, bright) == stated
    zero = L2ARadiometry(0.0, 10000.0, "old baseline")
    assert check_dark_pixels(zero, water) == zero
