"""Sentinel-2 L2A chips resampled onto each VHR chip's footprint.

Every MSI chip is warped to a 10 m grid anchored at its VHR chip's top-left corner in the VHR
chip's CRS, so the two modalities of a training sample cover the same ground whatever the
projection of the Sentinel-2 product. Reflectance is computed with the product's own offset;
no-data pixels are stored as 0 with a validity mask, never as NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject as warp_reproject
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from flywheel_core.imagery.indices import INDEX_NAMES, compute_indices
from flywheel_core.imagery.l2a import BANDS, cloud_fractions, radiometry, to_reflectance

log = logging.getLogger(__name__)

MSI_GSD_M = 10.0

MSI_CHIP_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("chip_id", pa.string()),
        ("cell", pa.string()),
        ("date", pa.string()),
        ("band_names", pa.list_(pa.string())),
        ("index_names", pa.list_(pa.string())),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("reflectance", pa.binary()),  # float32 (bands, h, w)
        ("indices", pa.binary()),  # float32 (indices, h, w)
        ("scl", pa.binary()),  # uint8 (h, w)
        ("valid", pa.binary()),  # uint8 (h, w): 1 where every band had data
        ("cloud_fraction", pa.float64()),
        ("cloud_shadow_fraction", pa.float64()),
        ("nodata_fraction", pa.float64()),
        ("crs", pa.string()),
        ("transform", pa.list_(pa.float64(), 6)),
        ("gsd_m", pa.float64()),
        ("footprint", pa.binary()),
        ("sensor", pa.string()),
        ("scene_id", pa.string()),
        ("acquired", pa.timestamp("us", tz="UTC")),
        ("boa_add_offset", pa.float64()),
    ]
)


@dataclass(frozen=True)
class S2Scene:
    assets: dict[str, str]  # band name -> href, plus "SCL"
    scene_id: str
    sensor: str
    acquired: datetime


@dataclass
class _Band:
    data: np.ndarray
    transform: Affine
    crs: rasterio.crs.CRS
    offset: float
    quant: float
    nodata: float | None


def chip_grid(row: dict) -> tuple[Affine, int, int]:
    """10 m grid over a VHR chip row's footprint, in the VHR chip's CRS."""
    t = Affine(*row["transform"])
    width_m = abs(t.a) * row["width"]
    height_m = abs(t.e) * row["height"]
    w = max(1, math.ceil(width_m / MSI_GSD_M - 1e-6))
    h = max(1, math.ceil(height_m / MSI_GSD_M - 1e-6))
    return Affine(MSI_GSD_M, 0.0, t.c, 0.0, -MSI_GSD_M, t.f), h, w


def _read_band(href: str, bounds: tuple[float, float, float, float], crs: str) -> _Band:
    """The band's pixels over `bounds` (in `crs`) plus a margin, not the whole product."""
    with rasterio.open(href) as src:
        left, bottom, right, top = transform_bounds(crs, src.crs, *bounds, densify_pts=8)
        pad = 2 * abs(src.transform.a)
        raw = from_bounds(left - pad, bottom - pad, right + pad, top + pad, src.transform)
        col0, row0 = math.floor(raw.col_off), math.floor(raw.row_off)
        col1 = math.ceil(raw.col_off + raw.width)
        row1 = math.ceil(raw.row_off + raw.height)
        win = Window(col0, row0, col1 - col0, row1 - row0).intersection(
            Window(0, 0, src.width, src.height)
        )
        data = src.read(1, window=win)
        offset, quant = radiometry(src)
        return _Band(data, src.window_transform(win), src.crs, offset, quant, src.nodata)


def _warp(
    band: _Band, dst_transform: Affine, dst_crs: str, shape: tuple[int, int], nearest: bool
) -> np.ndarray:
    dst = np.zeros(shape, dtype=band.data.dtype)
    warp_reproject(
        band.data,
        dst,
        src_transform=band.transform,
        src_crs=band.crs,
        src_nodata=band.nodata,
        dst_transform=dst_transform,
        dst_crs=dst_crs,
        dst_nodata=0,
        resampling=Resampling.nearest if nearest else Resampling.bilinear,
    )
    return dst


def read_bands(
    assets: Mapping[str, str],
    bounds: tuple[float, float, float, float],
    crs: str,
    names: Sequence[str] = (*BANDS, "SCL"),
) -> dict[str, _Band]:
    """Each named band's pixels over `bounds` (in `crs`) plus a margin, with its radiometry.

    The one reader of L2A band files: `iter_msi_chips` (training data) and
    `flywheel_core.infer.msi_channels` (scene inference) both read through it.
    """
    return {name: _read_band(assets[name], bounds, crs) for name in names}


def l2a_stack(
    bands: Mapping[str, _Band], transform: Affine, crs: str, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reflectance (BANDS, h, w), indices (INDEX_NAMES, h, w), valid (h, w) bool) on a grid.

    Every band in `BANDS` is warped bilinearly (DNs) to the grid `transform` / `shape` in `crs`,
    turned into reflectance with its own offset and quantification; a pixel is valid where every
    band had data, and invalid pixels are 0 in both stacks (never NaN). Indices are computed from
    the zeroed reflectance, as the stored MSI chips are.
    """
    refl = []
    valid = np.ones(shape, dtype=bool)
    for name in BANDS:
        b = bands[name]
        dn = _warp(b, transform, crs, shape, nearest=False)
        r = to_reflectance(dn, b.offset, b.quant, nodata=0)
        valid &= np.isfinite(r)
        refl.append(r)
    stack = np.stack(refl).astype(np.float32)
    stack[:, ~valid] = 0.0
    idx = compute_indices(dict(zip(BANDS, stack, strict=True)))
    idx_stack = np.stack([idx[n] for n in INDEX_NAMES]).astype(np.float32)
    idx_stack[:, ~valid] = 0.0
    return stack, idx_stack, valid


def iter_msi_chips(scene: S2Scene, vhr_rows: list[dict]) -> Iterator[dict]:
    """One MSI row per VHR chip row, each band read once for all chips of the cell."""
    if not vhr_rows:
        return
    missing = [b for b in (*BANDS, "SCL") if b not in scene.assets]
    if missing:
        raise ValueError(f"S2 scene {scene.scene_id} lacks bands {missing}")
    crs = vhr_rows[0]["crs"]
    grids = [chip_grid(r) for r in vhr_rows]
    xs = [t.c for t, _, _ in grids] + [t.c + w * MSI_GSD_M for t, _, w in grids]
    ys = [t.f for t, _, _ in grids] + [t.f - h * MSI_GSD_M for t, h, _ in grids]
    bounds = (min(xs), min(ys), max(xs), max(ys))
    bands = read_bands(scene.assets, bounds, crs, (*BANDS, "SCL"))
    offset = bands["B04"].offset
    log.info(
        "%s: read %d bands over %d chips (BOA_ADD_OFFSET=%s)",
        scene.scene_id,
        len(bands),
        len(vhr_rows),
        offset,
    )
    for row, (transform, h, w) in zip(vhr_rows, grids, strict=True):
        if row["crs"] != crs:
            raise ValueError(f"chips of one partition mix CRSs: {crs} and {row['crs']}")
        stack, idx_stack, valid = l2a_stack(bands, transform, crs, (h, w))
        scl = _warp(bands["SCL"], transform, crs, (h, w), nearest=True).astype(np.uint8)
        fractions = cloud_fractions(scl)
        fractions["nodata_fraction"] = max(fractions["nodata_fraction"], 1.0 - float(valid.mean()))
        yield {
            "uid": row["uid"],
            "chip_id": row["chip_id"],
            "cell": row["cell"],
            "date": row["date"],
            "band_names": list(BANDS),
            "index_names": list(INDEX_NAMES),
            "height": h,
            "width": w,
            "reflectance": stack.tobytes(),
            "indices": idx_stack.tobytes(),
            "scl": scl.tobytes(),
            "valid": valid.astype(np.uint8).tobytes(),
            **fractions,
            "crs": crs,
            "transform": list(transform)[:6],
            "gsd_m": MSI_GSD_M,
            "footprint": row["footprint"],
            "sensor": scene.sensor,
            "scene_id": scene.scene_id,
            "acquired": scene.acquired,
            "boa_add_offset": offset,
        }


def msi_arrays(row: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reflectance, indices, scl) arrays of a stored MSI chip row."""
    h, w = row["height"], row["width"]
    refl = np.frombuffer(row["reflectance"], dtype=np.float32).reshape(-1, h, w)
    idx = np.frombuffer(row["indices"], dtype=np.float32).reshape(-1, h, w)
    scl = np.frombuffer(row["scl"], dtype=np.uint8).reshape(h, w)
    return refl, idx, scl
