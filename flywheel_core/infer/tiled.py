"""Tiled inference over a whole scene into a probability COG, in memory bounded by tile × width.

Tiling. Tiles of `tile` px step by `stride = tile - overlap`; the first tile starts `overlap // 2`
px above/left of the scene, so every scene pixel lies at least `overlap // 2` px inside some tile
(the tile interiors ``[k*stride, (k+1)*stride)`` partition the scene). Pixels a tile needs outside
the scene are filled by reflection about the scene edge (numpy's "reflect": the edge pixel is not
repeated), so every tile is full size and the model never sees zero padding that is not there.

Blending. Each tile's probabilities are weighted by a separable window: 1 in the tile's centre,
a raised-cosine ramp across the overlap at each edge (the outer `overlap // 8` px stay at the
floor), floored at `WEIGHT_FLOOR` so it is never exactly 0. For two tiles overlapping by
`overlap` px the two ramps sum to 1, so the blend is a smooth cross-fade; the px next to a tile
edge (where the model's own zero padding corrupts its output) get weights ~1e-3, so they barely
count. The blend is normalized by the accumulated
weight; because every tile is full size and uses the same window, the weight sum is separable and
is computed from 1-D row and column sums instead of being accumulated per pixel.

Memory. The scene is processed one row of tiles at a time. The only per-pixel state is the
weighted-probability accumulator for the `tile` scene rows that the current tile row covers
(`tile × width` float32); after a tile row, its first `stride` rows can receive no more
contributions, are normalized, quantized and written to a tiled GeoTIFF, and the accumulator is
shifted up by `stride`. The input is read as one strip of ≤ `tile` (+1) rows × the full width per
tile row. Nothing is proportional to the scene height; the strips are proportional to its width
(`TiledResult` reports the bytes). The rows go to an uncompressed tiled GeoTIFF in a temporary
folder beside the output (H x W bytes on disk; uncompressed so blocks filled by two strips are
never rewritten), which GDAL's COG driver then copies block by block into a DEFLATE COG with
overviews; the output appears under its name only when complete.

Output encoding: one uint8 band, probability = value / 255 (value = round(255 p)); the tags say
so (`probability_scale`, `probability_encoding`) and the band's GDAL scale is 1/255.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.transform import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

if TYPE_CHECKING:
    import torch

Predictor = Callable[[np.ndarray], np.ndarray]
ExtraChannels = Callable[[Window, Affine], np.ndarray]

WEIGHT_FLOOR = 1e-3
PROBABILITY_SCALE = 1.0 / 255.0
PROBABILITY_ENCODING = "uint8: probability = value / 255 (value = round(255 * p))"
BAND_DESCRIPTION = "pv_probability"
_INTERMEDIATE_BLOCK = 256


@dataclass(frozen=True)
class TiledResult:
    path: Path
    tiles: int
    seconds: float
    # Per-pixel blend state: the tile-rows × width float32 accumulator + the 1-D column weights.
    peak_accumulator_bytes: int
    # Everything else held per strip: input strip (with reflected margins), the float32 batch,
    # the uint8 output rows. Also independent of the scene height.
    peak_buffer_bytes: int
    predict_seconds: float
    width: int
    height: int


def blend_weights(tile: int, overlap: int) -> np.ndarray:
    """1-D blend window of length `tile`: raised-cosine ramps at both ends, floor > 0.

    The ramp rises over the middle of the overlap, ``[m, overlap - m)`` with
    ``m = overlap // 8``: the outer `m` px of a tile, where a CNN's zero padding hurts most, keep
    only the floor weight. Two tiles overlapping by `overlap` px have ramps summing to 1.
    """
    if overlap <= 0:
        return np.ones(tile, np.float64)
    margin = overlap // 8
    i = np.arange(tile, dtype=np.float64)
    d = np.minimum(i, tile - 1 - i)  # px from the nearer tile edge
    r = np.clip((d + 0.5 - margin) / (overlap - 2 * margin), 0.0, 1.0)
    ramp = 0.5 - 0.5 * np.cos(np.pi * r)
    return WEIGHT_FLOOR + (1.0 - WEIGHT_FLOOR) * ramp


def tile_origins(length: int, tile: int, overlap: int) -> np.ndarray:
    """Tile start offsets along one axis (the first is -overlap//2, i.e. outside the scene)."""
    stride = tile - overlap
    n = max(1, math.ceil(length / stride))
    return -(overlap // 2) + stride * np.arange(n)


def reflect_index(idx: np.ndarray, length: int) -> np.ndarray:
    """Map indices outside [0, length) into it by reflection about the edges (edge not repeated)."""
    if length == 1:
        return np.zeros_like(idx)
    period = 2 * (length - 1)
    m = np.abs(idx) % period
    return np.where(m >= length, period - m, m)


def _axis_weight_sums(start: int, stop: int, origins: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Sum of the 1-D tile weights that indices [start, stop) receive from tiles at `origins`."""
    out = np.zeros(stop - start, np.float64)
    tile = len(w)
    for o in (int(o) for o in origins):
        a, b = max(o, start), min(o + tile, stop)
        if b > a:
            out[a - start : b - start] += w[a - o : b - o]
    return out


def predict_raster(
    src_path: str | Path,
    dst_path: str | Path,
    predict: Predictor,
    *,
    tile: int = 256,
    overlap: int = 64,
    batch_size: int = 8,
    bands: Sequence[int] | None = None,
    scale: float = 1 / 255,
    extra: ExtraChannels | None = None,
    progress: Callable[[int, int], None] | None = None,
    tags: Mapping[str, object] | None = None,
) -> TiledResult:
    """Run `predict` over the whole raster at `src_path`; write a uint8 probability COG.

    `predict` takes a float32 batch (B, C, tile, tile) — the selected `bands` (1-based, default
    all) times `scale`, then the channels `extra(window, transform)` returns for each tile (the
    tile's window in scene px, which may start at negative offsets, and that window's affine
    transform) — and returns probabilities (B, 1, tile, tile) or (B, tile, tile) in [0, 1].
    `progress(done, total)` is called after every batch. `tags` are added to the COG's tags
    (a `model` tag defaults to `predict.model_name` or its name).
    """
    t_start = time.perf_counter()
    src_path, dst_path = Path(src_path), Path(dst_path)
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile): got overlap={overlap}, tile={tile}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    stride = tile - overlap
    wy = blend_weights(tile, overlap)
    wx = wy
    w2d = np.outer(wy, wx).astype(np.float32)
    predict_seconds = 0.0

    with rasterio.open(src_path) as src:
        height, width = src.height, src.width
        band_idx = list(bands) if bands is not None else list(range(1, src.count + 1))
        nodata = src.nodata
        rows0 = tile_origins(height, tile, overlap)
        cols0 = tile_origins(width, tile, overlap)
        total = len(rows0) * len(cols0)
        col_wsum = _axis_weight_sums(0, width, cols0, wx).astype(np.float32)
        # Padded column extent: [cols0[0], cols0[-1] + tile) mapped into the scene by reflection.
        col_idx = reflect_index(np.arange(int(cols0[0]), int(cols0[-1]) + tile), width)

        acc = np.zeros((tile, width), np.float32)  # scene rows [r0, r0 + tile) of this tile row
        n_img = len(band_idx)
        n_ch: int | None = None
        batch: np.ndarray | None = None
        peak_acc = acc.nbytes + col_wsum.nbytes
        peak_buf = 0

        dst_path.parent.mkdir(parents=True, exist_ok=True)
        model_name = getattr(predict, "model_name", None) or getattr(
            predict, "__name__", type(predict).__name__
        )
        all_tags: dict[str, str] = {
            "model": str(model_name),
            "probability_scale": repr(PROBABILITY_SCALE),
            "probability_encoding": PROBABILITY_ENCODING,
            "tile": str(tile),
            "overlap": str(overlap),
            "blend": f"raised-cosine ramp across the overlap, floor {WEIGHT_FLOOR}",
            "input_scale": repr(scale),
            "input_bands": ",".join(map(str, band_idx)),
            "source": src_path.name,
        }
        all_tags.update({k: str(v) for k, v in (tags or {}).items()})
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": 1,
            "dtype": "uint8",
            "crs": src.crs,
            "transform": src.transform,
            "tiled": True,
            "blockxsize": _INTERMEDIATE_BLOCK,
            "blockysize": _INTERMEDIATE_BLOCK,
            "compress": "NONE",
        }
        done = 0
        with tempfile.TemporaryDirectory(dir=dst_path.parent, prefix=".tiled-") as tmpdir:
            tmp_tif = Path(tmpdir) / "blend.tif"
            with rasterio.open(tmp_tif, "w", **profile) as out:
                for r0 in (int(r) for r in rows0):
                    # Input strip: the rows this tile row needs, reflected into the scene.
                    row_idx = reflect_index(np.arange(r0, r0 + tile), height)
                    lo, hi = int(row_idx.min()), int(row_idx.max()) + 1
                    raw = src.read(band_idx, window=Window(0, lo, width, hi - lo))
                    # One gather, no intermediate: (C, tile, padded width).
                    strip = raw[:, (row_idx - lo)[:, None], col_idx[None, :]]
                    peak_buf = max(peak_buf, raw.nbytes + strip.nbytes)
                    valid = None
                    if nodata is not None:
                        valid = ~np.all(raw == nodata, axis=0)  # rows [lo, hi)
                        peak_buf = max(peak_buf, raw.nbytes + strip.nbytes + valid.nbytes)
                    for j0 in range(0, len(cols0), batch_size):
                        js = range(j0, min(j0 + batch_size, len(cols0)))
                        for b, j in enumerate(js):
                            off = int(cols0[j] - cols0[0])
                            img = strip[:, :, off : off + tile]
                            if extra is not None:
                                win = Window(int(cols0[j]), r0, tile, tile)
                                ex = np.asarray(
                                    extra(win, window_transform(win, src.transform)), np.float32
                                )
                                if ex.ndim == 2:
                                    ex = ex[np.newaxis]
                                if ex.shape[1:] != (tile, tile):
                                    raise ValueError(
                                        f"extra() returned shape {ex.shape}, expected "
                                        f"(channels, {tile}, {tile})"
                                    )
                            else:
                                ex = None
                            if batch is None:
                                n_ch = n_img + (0 if ex is None else ex.shape[0])
                                batch = np.empty((batch_size, n_ch, tile, tile), np.float32)
                            np.multiply(img, scale, out=batch[b, :n_img], casting="unsafe")
                            if ex is not None:
                                if n_img + ex.shape[0] != n_ch:
                                    raise ValueError("extra() returned a varying channel count")
                                batch[b, n_img:] = ex
                        assert batch is not None  # allocated by the first tile above
                        nb = len(js)
                        t0 = time.perf_counter()
                        prob = np.asarray(predict(batch[:nb]), dtype=np.float32)
                        predict_seconds += time.perf_counter() - t0
                        if prob.ndim == 4 and prob.shape[1] == 1:
                            prob = prob[:, 0]
                        if prob.shape != (nb, tile, tile):
                            raise ValueError(
                                f"predict returned shape {prob.shape} for a batch of {nb} tiles "
                                f"of {tile} px; expected ({nb}, 1, {tile}, {tile})"
                            )
                        # Rows of the accumulator that are inside the scene.
                        ta, tb = max(0, -r0), min(tile, height - r0)
                        for b, j in enumerate(js):
                            c0 = int(cols0[j])
                            ca, cb = max(0, c0), min(width, c0 + tile)
                            acc[ta:tb, ca:cb] += (prob[b] * w2d)[ta:tb, ca - c0 : cb - c0]
                        done += nb
                        peak_buf = max(peak_buf, batch.nbytes + prob.nbytes)
                        if progress is not None:
                            progress(done, total)
                    # Rows [r0, r0 + stride) receive no more tiles: normalize and write them.
                    last = r0 == int(rows0[-1])
                    a = max(r0, 0)
                    b_ = height if last else min(r0 + stride, height)
                    if b_ > a:
                        rows = acc[a - r0 : b_ - r0]
                        row_wsum = _axis_weight_sums(a, b_, rows0, wy).astype(np.float32)
                        norm = row_wsum[:, None] * col_wsum[None, :]
                        p = rows / norm
                        q = np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)
                        if valid is not None:
                            q[~valid[a - lo : b_ - lo]] = 0
                        out.write(q, 1, window=Window(0, a, width, b_ - a))
                        peak_buf = max(peak_buf, norm.nbytes + p.nbytes + q.nbytes)
                    acc[: tile - stride] = acc[stride:]
                    acc[tile - stride :] = 0.0
                out.update_tags(**all_tags)
                out.set_band_description(1, BAND_DESCRIPTION)
                out.scales = (PROBABILITY_SCALE,)
                out.offsets = (0.0,)
            tmp_cog = Path(tmpdir) / "cog.tif"
            with rasterio.open(tmp_tif) as blended:
                rasterio.shutil.copy(
                    blended,
                    tmp_cog,
                    driver="COG",
                    COMPRESS="DEFLATE",
                    PREDICTOR="2",
                    BLOCKSIZE="512",
                    OVERVIEW_RESAMPLING="AVERAGE",
                    NUM_THREADS="ALL_CPUS",
                )
            os.replace(tmp_cog, dst_path)

    return TiledResult(
        path=dst_path,
        tiles=total,
        seconds=time.perf_counter() - t_start,
        peak_accumulator_bytes=int(peak_acc),
        peak_buffer_bytes=int(peak_acc + peak_buf),
        predict_seconds=predict_seconds,
        width=width,
        height=height,
    )


def torch_predictor(module: torch.nn.Module, device: Any = "cpu") -> Predictor:
    """Wrap a torch module as a `predict` callable: float32 numpy batch in, probabilities out.

    Runs under `torch.no_grad()` in eval mode; uses `module.predict_proba(x)` if the module has
    one, else `sigmoid(module(x))` (a module returning logits). `device` is a torch device or a
    device request ('auto', 'cpu', 'cuda', ...) resolved by `flywheel_core.compute.device`.
    """
    import torch

    if isinstance(device, str):
        from flywheel_core.compute.device import resolve_device

        device, _ = resolve_device(device)
    module = module.to(device).eval()
    proba = getattr(module, "predict_proba", None)

    def predict(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
        with torch.no_grad():
            out = proba(x) if callable(proba) else torch.sigmoid(module(x))
        return out.float().cpu().numpy()

    predict.model_name = type(module).__name__  # type: ignore[attr-defined]
    return predict
