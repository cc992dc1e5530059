"""Quality checks on stored chips, shared by asset checks and tests.

Each check returns (passed, facts) so the orchestrator can show the facts whether it passed or not.
"""

from __future__ import annotations

import numpy as np
from pyproj import CRS
from shapely import wkb
from shapely.geometry.base import BaseGeometry

Facts = dict[str, float | int | str]


def chips_inside_cell(rows: list[dict], cell_area: BaseGeometry) -> tuple[bool, Facts]:
    """Every chip's centre lies in its partition's cell (chips belong to exactly one cell)."""
    outside = [
        r["chip_id"] for r in rows if not cell_area.contains(wkb.loads(r["footprint"]).centroid)
    ]
    facts: Facts = {"chips": len(rows), "outside": len(outside)}
    if outside:
        facts["first_outside"] = outside[0]
    return not outside, facts


def crs_consistent(rows: list[dict]) -> tuple[bool, Facts]:
    """One projected, metric CRS for the whole partition, so chips tile without reprojection."""
    crss = sorted({r["crs"] for r in rows})
    if not crss:
        return True, {"crs": "none (empty partition)"}
    crs = CRS.from_user_input(crss[0])
    metric = crs.is_projected and crs.axis_info[0].unit_name in ("metre", "meter")
    return len(crss) == 1 and metric, {"crs": ", ".join(crss), "projected_metric": str(metric)}


def nan_count(rows: list[dict], column: str, dtype: str | None = None) -> tuple[bool, Facts]:
    """No NaN or infinite value in a stored band array."""
    bad = 0
    for r in rows:
        arr = np.frombuffer(r[column], dtype=dtype or r.get("dtype", "float32"))
        if arr.dtype.kind == "f":
            bad += int(np.count_nonzero(~np.isfinite(arr)))
    return bad == 0, {"chips": len(rows), "non_finite_values": bad}


def cloud_fraction_reported(rows: list[dict]) -> tuple[bool, Facts]:
    """Every MSI chip reports a cloud fraction in [0, 1]."""
    values = [r.get("cloud_fraction") for r in rows]
    ok = all(v is not None and 0.0 <= v <= 1.0 for v in values)
    facts: Facts = {
        "chips": len(rows),
        "missing_or_out_of_range": sum(1 for v in values if v is None or not 0.0 <= v <= 1.0),
    }
    if values and ok:
        present = [float(v) for v in values if v is not None]
        facts["mean_cloud_fraction"] = float(np.mean(present))
        facts["max_cloud_fraction"] = float(np.max(present))
    return ok, facts


def aligned(vhr_rows: list[dict], msi_rows: list[dict]) -> tuple[bool, Facts]:
    """Each VHR chip has exactly one MSI chip over the same footprint."""
    vhr = {r["chip_id"]: r["footprint"] for r in vhr_rows}
    msi = {r["chip_id"]: r["footprint"] for r in msi_rows}
    missing = len(set(vhr) - set(msi))
    extra = len(set(msi) - set(vhr))
    moved = sum(1 for k in set(vhr) & set(msi) if vhr[k] != msi[k])
    return missing == extra == moved == 0, {"missing": missing, "extra": extra, "moved": moved}
