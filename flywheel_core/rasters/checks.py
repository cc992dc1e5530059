"""The checks that gate a dataset's `ready` status.

They verify the outputs as stored, not as intended: the Lance partition and the GeoParquet index
are read back from where they were written, so `ready` means a reader will find every tile.
Each check returns (passed, facts) like `flywheel_core.imagery.qa`, and the collected results go
into the registry row's `checks` JSON whether they passed or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import geopandas as gpd
import numpy as np
from shapely.geometry.base import BaseGeometry

from flywheel_core.rasters.cog import CogReport
from flywheel_core.rasters.tiling import TileWindow

Facts = dict[str, float | int | str | bool]
CheckResult = tuple[bool, Facts]

# Footprints are reprojected corner by corner while the dataset outline is densified, so a tile
# may poke out of it by a hair; 1e-6 degrees is about 0.1 m.
FOOTPRINT_TOLERANCE_DEG = 1e-6


def cog_valid(report: CogReport, where: str) -> CheckResult:
    """The COG the tiles were cut from (stored at `where`) follows the COG layout rules."""
    facts: Facts = {"cog": where, "errors": len(report.errors)}
    if report.errors:
        facts["first_error"] = report.errors[0]
    return report.valid, facts


def tiles_cover_raster(windows: Sequence[TileWindow], width: int, height: int) -> CheckResult:
    """Every pixel of the raster lies in some tile window (checked on the windows' edge grid)."""
    if not windows:
        return False, {"windows": 0, "uncovered_px": width * height}
    ys = np.unique(
        [0, height, *(w.row_off for w in windows), *(w.row_off + w.src_size for w in windows)]
    )
    xs = np.unique(
        [0, width, *(w.col_off for w in windows), *(w.col_off + w.src_size for w in windows)]
    )
    covered = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)
    for w in windows:
        r0, r1 = np.searchsorted(ys, [w.row_off, w.row_off + w.src_size])
        c0, c1 = np.searchsorted(xs, [w.col_off, w.col_off + w.src_size])
        covered[r0:r1, c0:c1] = True
    inside = (ys[1:, None] <= height) & (xs[None, 1:] <= width)
    areas = np.diff(ys)[:, None] * np.diff(xs)[None, :]
    uncovered = int(areas[inside & ~covered].sum())
    return uncovered == 0, {"windows": len(windows), "uncovered_px": uncovered}


def tile_ids_unique(uids: Sequence[str]) -> CheckResult:
    dupes = len(uids) - len(set(uids))
    return dupes == 0 and len(uids) > 0, {"tiles": len(uids), "duplicates": dupes}


def lance_rows_match(expected: Iterable[str], stored: Iterable[str], table: str) -> CheckResult:
    """The Lance partition holds exactly the tiles that were cut (read back after the commit)."""
    want, have = set(expected), list(stored)
    missing = len(want - set(have))
    extra = len(set(have) - want)
    dupes = len(have) - len(set(have))
    facts: Facts = {
        "table": table,
        "expected": len(want),
        "stored": len(have),
        "missing": missing,
        "extra": extra,
        "duplicates": dupes,
    }
    return missing == extra == dupes == 0 and len(want) > 0, facts


def index_matches(index: gpd.GeoDataFrame, expected: Iterable[str]) -> CheckResult:
    """The GeoParquet index, as read back, lists every tile once, in EPSG:4326, valid polygons."""
    want = set(expected)
    have = list(index["uid"]) if "uid" in index.columns else []
    crs_ok = index.crs is not None and index.crs.to_epsg() == 4326
    invalid = int((~index.geometry.is_valid | index.geometry.is_empty).sum()) if len(index) else 0
    facts: Facts = {
        "rows": len(index),
        "expected": len(want),
        "missing": len(want - set(have)),
        "extra": len(set(have) - want),
        "crs": str(index.crs.to_string()) if index.crs is not None else "none",
        "invalid_geometries": invalid,
    }
    passed = (
        crs_ok
        and invalid == 0
        and len(have) == len(set(have)) == len(want)
        and not facts["missing"]
        and len(want) > 0
    )
    return passed, facts


def footprints_inside(footprints: Sequence[BaseGeometry], outline: BaseGeometry) -> CheckResult:
    """Every tile footprint lies inside the dataset's footprint (both EPSG:4326)."""
    zone = outline.buffer(FOOTPRINT_TOLERANCE_DEG)
    outside = sum(1 for f in footprints if not zone.contains(f))
    return outside == 0 and len(footprints) > 0, {"tiles": len(footprints), "outside": outside}


def pixels_finite(non_finite: int, tiles: int) -> CheckResult:
    """No NaN or infinite pixel value other than the declared no-data value."""
    return non_finite == 0, {"tiles": tiles, "non_finite_values": non_finite}


def has_valid_pixels(nodata_fractions: Sequence[float]) -> CheckResult:
    """At least one tile holds data (a dataset of pure no-data is an empty scene)."""
    empty = sum(1 for f in nodata_fractions if f >= 1.0)
    facts: Facts = {"tiles": len(nodata_fractions), "all_nodata_tiles": empty}
    return len(nodata_fractions) > empty, facts


def as_json(results: dict[str, CheckResult]) -> dict[str, dict]:
    return {name: {"passed": bool(ok), **facts} for name, (ok, facts) in results.items()}


def failed(results: dict[str, CheckResult]) -> list[str]:
    return [name for name, (ok, _) in results.items() if not ok]
