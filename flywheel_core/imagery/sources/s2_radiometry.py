"""Sentinel-2 L2A digital numbers to surface reflectance: which offset, and how it was decided.

reflectance = (DN + offset) / quantification, with offset -1000 DN from processing baseline 04.00
(deployed 25 January 2022) and 0 before, quantification 10000. Where the offset comes from, in
order (the first that is present wins):

1. the asset's `raster:bands` `scale` / `offset` (reflectance = DN * scale + offset);
2. `earthsearch:boa_offset_applied: true`: the provider already shifted the DNs, offset 0;
3. `s2:processing_baseline`: >= 04.00 means -1000, older means 0;
4. the acquisition date: on or after 2022-01-25 means -1000.

These flags have been reported wrong for some items (Element84/earth-search issues #66 and #71),
so the pixels have the last word, in the one direction they can: reflectance cannot be negative,
so when the metadata's offset would put the window's dark pixels (the 0.5th percentile of its
valid DNs over all bands) more than 0.01 below zero, the DNs cannot carry that offset and it is
dropped (offset 0), with a note saying so. A window with no dark pixels cannot tell an offset it
does not show, so the metadata stands there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

BASELINE_04_DATE = date(2022, 1, 25)
OFFSET_04_DN = -1000.0
QUANTIFICATION = 10000.0
DARK_PERCENTILE = 0.5
NEGATIVE_TOLERANCE = 0.01  # reflectance below -0.01 at the dark percentile is impossible


@dataclass(frozen=True)
class L2ARadiometry:
    offset_dn: float
    quantification: float
    rule: str  # which metadata (or pixel check) decided, for the logs and the chips' notes

    def reflectance(self, dn: np.ndarray, nodata: float | None = 0) -> np.ndarray:
        refl = (dn.astype(np.float32) + np.float32(self.offset_dn)) / np.float32(
            self.quantification
        )
        if nodata is not None:
            refl[dn == nodata] = np.nan
        return refl


def _baseline(value: Any) -> float | None:
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return None


def from_metadata(
    properties: Mapping[str, Any], asset: Mapping[str, Any] | None, acquired: date | None
) -> L2ARadiometry:
    """The offset the item's metadata implies (rules 1-4 above)."""
    bands = (asset or {}).get("raster:bands") or []
    if bands and isinstance(bands[0], Mapping) and "scale" in bands[0]:
        scale = float(bands[0]["scale"])
        offset = float(bands[0].get("offset", 0.0))
        if scale > 0:
            return L2ARadiometry(offset / scale, 1.0 / scale, "raster:bands scale/offset")
    applied = properties.get("earthsearch:boa_offset_applied")
    if applied is True:
        return L2ARadiometry(0.0, QUANTIFICATION, "earthsearch:boa_offset_applied")
    baseline = _baseline(properties.get("s2:processing_baseline"))
    if baseline is not None:
        offset = OFFSET_04_DN if baseline >= 4.0 else 0.0
        return L2ARadiometry(offset, QUANTIFICATION, f"s2:processing_baseline {baseline:05.2f}")
    if acquired is not None:
        offset = OFFSET_04_DN if acquired >= BASELINE_04_DATE else 0.0
        return L2ARadiometry(offset, QUANTIFICATION, f"acquisition date {acquired}")
    return L2ARadiometry(0.0, QUANTIFICATION, "no metadata: offset 0")


def check_dark_pixels(radiometry: L2ARadiometry, dns: np.ndarray) -> L2ARadiometry:
    """The metadata's radiometry, or offset 0 when it would make the dark pixels negative.

    `dns` are the window's valid DNs (any shape, no-data removed) over the reflective bands.
    """
    values = np.asarray(dns, dtype=np.float64).ravel()
    if values.size == 0 or radiometry.offset_dn >= 0:
        return radiometry
    dark = float(np.percentile(values, DARK_PERCENTILE))
    lowest = (dark + radiometry.offset_dn) / radiometry.quantification
    if lowest < -NEGATIVE_TOLERANCE:
        return L2ARadiometry(
            0.0,
            radiometry.quantification,
            f"{radiometry.rule} said offset {radiometry.offset_dn:g}, but the dark pixels "
            f"(DN {dark:.0f}) would be reflectance {lowest:.3f}: offset 0 (pixel check)",
        )
    return radiometry
