"""Sentinel-2 channels for scene inference: the training data's MSI stack, over a whole VHR scene.

A model trained with `bands: "vhr+msi"` takes, after its VHR bands, the channels
`msi_<name>` (`flywheel_core.train.dataset`), where the names are a stored MSI chip's
`band_names + index_names` (`training_data`'s `metadata.msi_channels`). This module builds the
same channels for `predict_raster`'s `extra(window, transform)` hook:

1. The L2A bands are read once over the VHR scene's extent with the reader the `msi_chips` asset
   uses (`flywheel_core.imagery.msi_chips.read_bands`), warped bilinearly (DNs) to a 10 m grid in
   the VHR scene's CRS anchored at the scene's top-left corner, turned into reflectance with each
   band's own BOA_ADD_OFFSET and quantification, and the indices are computed with the same
   formulas (`msi_chips.l2a_stack`): pixels where a band has no data are 0 in every channel, as in
   the stored chips; NaN would become 0 as training's `nan_to_num` does.
2. For each tile, the stack is resampled bilinearly to the tile's pixels with the convention of
   `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`, which training uses
   to bring a chip's 10 m stack to the chip's pixels: a VHR pixel's *centre* maps to the
   fractional MSI index ``(x - x0) / 10 - 0.5`` (pixel centres, not corners), clamped to
   ``[0, n - 1]`` (torch clamps the same way at the edges: the outermost half MSI pixel is
   constant). Tile pixels outside the scene (tiles start at ``-overlap // 2`` and run past the
   far edge) take the MSI value of the scene pixel that `predict_raster` reflects them onto, so
   both modalities of a padded tile show the same (mirrored) ground.

What still differs from a training chip. Training warps each chip's own 10 m grid, anchored at
the chip's top-left corner, with ``ceil(extent / 10 m)`` pixels, and `interpolate` stretches those
pixels over the chip: a chip whose side is not a multiple of 10 m (e.g. 256 px at 0.3 m = 76.8 m
-> 8 px) sees MSI pixels of ``extent / ceil(extent / 10)`` m (9.6 m), and a chip whose corner is
not on the scene's 10 m lattice sees the S2 product sampled at other nodes. Here the grid is
exactly 10 m and anchored at the scene's corner. Where the chip side is a multiple of 10 m and
the chip's corner lies on the scene's 10 m lattice (the default synthetic world: 256 px at
0.3125 m = 80 m chips from the scene's corner), a chip predicted alone and the same window
predicted as part of the scene see the same MSI values (float rounding aside); otherwise they
differ by that sub-10 m shift and stretch, a fraction of one S2 pixel.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import WindowError
from rasterio.windows import Window

from flywheel_core.errors import FlywheelError
from flywheel_core.imagery.indices import INDEX_NAMES
from flywheel_core.imagery.l2a import BANDS
from flywheel_core.imagery.msi_chips import MSI_GSD_M, chip_grid, l2a_stack, read_bands
from flywheel_core.infer.tiled import ExtraChannels, reflect_index

log = logging.getLogger(__name__)

MSI_PREFIX = "msi_"  # flywheel_core.train.dataset prefixes the MSI channel names with it
MSI_CHANNELS: tuple[str, ...] = (*BANDS, *INDEX_NAMES)  # what a stored MSI chip carries


class MissingChannelsError(FlywheelError, ValueError):
    """The scene cannot supply channels the model was trained with."""


def split_channels(channels: Sequence[str]) -> tuple[list[str], list[str]]:
    """(VHR channel names, MSI channel names without the `msi_` prefix) of a model's inputs.

    Training concatenates the VHR bands first and the MSI channels after them; a channel list in
    another order cannot be fed and raises.
    """
    vhr = [c for c in channels if not c.startswith(MSI_PREFIX)]
    msi = [c[len(MSI_PREFIX) :] for c in channels if c.startswith(MSI_PREFIX)]
    if list(channels) != vhr + [MSI_PREFIX + c for c in msi]:
        raise ValueError(f"MSI channels must follow the VHR channels, got {list(channels)}")
    return vhr, msi


def scene_grid(transform: Affine, width: int, height: int) -> tuple[Affine, int, int]:
    """The 10 m grid over a VHR scene (anchored at its top-left corner), as `chip_grid` builds
    it for a chip: ``ceil(extent / 10 m)`` pixels per axis."""
    return chip_grid({"transform": list(transform)[:6], "width": width, "height": height})


@dataclass(frozen=True)
class MSIStack:
    """MSI channels of a scene on its 10 m grid, in the order the model takes them."""

    data: np.ndarray  # float32 (channels, h, w), no NaN
    channels: tuple[str, ...]  # names without the `msi_` prefix, in `data` order
    transform: Affine  # the 10 m grid, in the VHR scene's CRS
    crs: str
    valid: np.ndarray  # bool (h, w): every L2A band had data
    scene_id: str | None
    boa_add_offset: float

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean()) if self.valid.size else 0.0

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear values (channels, len(y), len(x)) at the grid of points x (columns) × y (rows)
        in the stack's CRS, with `interpolate(align_corners=False)`'s pixel-centre convention and
        edge clamping."""
        h, w = self.data.shape[1:]
        g = self.transform
        u = (np.asarray(x, np.float64) - g.c) / g.a - 0.5
        v = (np.asarray(y, np.float64) - g.f) / g.e - 0.5
        j0, j1, lx = _taps(u, w)
        i0, i1, ly = _taps(v, h)
        d = self.data
        top = d[:, i0[:, None], j0[None, :]] * (1 - lx) + d[:, i0[:, None], j1[None, :]] * lx
        bot = d[:, i1[:, None], j0[None, :]] * (1 - lx) + d[:, i1[:, None], j1[None, :]] * lx
        return (top * (1 - ly)[:, None] + bot * ly[:, None]).astype(np.float32)

    def extra(self, scene_transform: Affine, width: int, height: int) -> ExtraChannels:
        """`predict_raster`'s `extra(window, transform)` for the VHR scene `scene_transform`
        (`width` × `height` px): the stack at the window's pixel centres, (channels, h, w).

        Window pixels outside the scene are reflected into it exactly as `predict_raster`
        reflects the VHR bands (`reflect_index`), so each padded pixel's MSI channels belong to the
        VHR pixel it shows. The `transform` argument is the window's own transform; the pixel
        positions are taken from the scene transform and the window offsets so the reflection can
        be applied.
        """
        _check_north_up(scene_transform)
        t = scene_transform

        def extra(window: Window, transform: Affine | None = None) -> np.ndarray:
            c0, r0 = int(window.col_off), int(window.row_off)
            cols = reflect_index(np.arange(c0, c0 + int(window.width)), width)
            rows = reflect_index(np.arange(r0, r0 + int(window.height)), height)
            x = t.c + (cols + 0.5) * t.a
            y = t.f + (rows + 0.5) * t.e
            return self.sample(x, y)

        extra.channels = tuple(MSI_PREFIX + c for c in self.channels)  # type: ignore[attr-defined]
        return extra


def _taps(coord: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower/upper source index and weight of the upper one, as torch's bilinear kernel."""
    c = np.clip(coord, 0.0, n - 1)
    i0 = np.floor(c).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, (c - i0).astype(np.float32)


def _check_north_up(t: Affine) -> None:
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        raise ValueError(f"MSI channels need a north-up scene (no rotation), got {tuple(t)[:6]}")


def read_msi_stack(
    s2_assets: Mapping[str, str] | None,
    vhr_href: str | Path,
    channels: Sequence[str],
    *,
    scene_id: str | None = None,
) -> MSIStack:
    """The MSI `channels` (names without the `msi_` prefix, e.g. a model's `metadata.msi_channels`
    order) of the S2 L2A scene `s2_assets` (band name -> href) over the VHR scene at `vhr_href`.

    Raises `MissingChannelsError`, naming what is missing, when there is no S2 scene, the scene
    lacks a band the channels need (every band in `BANDS`: validity is decided over all of them,
    as for the stored chips), a channel is not one an MSI chip carries, or the S2 scene does not
    overlap the VHR scene at all.
    """
    channels = list(channels)
    unknown = [c for c in channels if c not in MSI_CHANNELS]
    if unknown:
        raise MissingChannelsError(
            f"MSI channels {unknown} are not among the Sentinel-2 channels this project computes "
            f"({', '.join(MSI_CHANNELS)})"
        )
    wanted = ", ".join(MSI_PREFIX + c for c in channels)
    if s2_assets is None:
        raise MissingChannelsError(
            f"no Sentinel-2 L2A scene for this scene's window: the model takes MSI channels "
            f"({wanted}) and cannot run without one"
        )
    name = f"Sentinel-2 scene {scene_id}" if scene_id else "the Sentinel-2 scene"
    missing = [b for b in BANDS if b not in s2_assets]
    if missing:
        raise MissingChannelsError(
            f"{name} lacks bands {missing} that the model's MSI channels ({wanted}) are "
            "computed from"
        )
    with rasterio.open(vhr_href) as src:
        if src.crs is None:
            raise ValueError(f"{vhr_href} has no CRS; MSI channels need a georeferenced scene")
        crs = src.crs.to_string()
        transform, width, height = src.transform, src.width, src.height
    _check_north_up(transform)
    grid, h, w = scene_grid(transform, width, height)
    bounds = (grid.c, grid.f - h * MSI_GSD_M, grid.c + w * MSI_GSD_M, grid.f)
    try:
        bands = read_bands(s2_assets, bounds, crs, BANDS)
    except WindowError as exc:
        raise MissingChannelsError(
            f"{name} does not overlap the VHR scene {vhr_href}: "
            f"no data for the MSI channels ({wanted})"
        ) from exc
    refl, idx, valid = l2a_stack(bands, grid, crs, (h, w))
    if not valid.any():
        raise MissingChannelsError(
            f"{name} has no valid pixel over the VHR scene "
            f"{vhr_href}: no data for the MSI channels ({wanted})"
        )
    by_name = dict(zip(BANDS, refl, strict=True)) | dict(zip(INDEX_NAMES, idx, strict=True))
    data = (
        np.stack([by_name[c] for c in channels]).astype(np.float32)
        if channels
        else np.zeros((0, h, w), np.float32)
    )
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    stack = MSIStack(
        data=data,
        channels=tuple(channels),
        transform=grid,
        crs=crs,
        valid=valid,
        scene_id=scene_id,
        boa_add_offset=float(bands["B04"].offset),
    )
    log.info(
        "MSI channels of %s over %s: %d channels on a %dx%d 10 m grid, %.0f%% valid",
        scene_id,
        Path(str(vhr_href)).name,
        len(channels),
        h,
        w,
        100 * stack.valid_fraction,
    )
    return stack
