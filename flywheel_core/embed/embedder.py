"""Images and tile rows to DINOv3 vectors: one CLS and one mean-patch vector per image.

Preprocessing follows the Hugging Face DINOv3 image processor (rescale to [0, 1], bilinear
antialiased resize to the model's size, normalise with the model's statistics) but runs on the
batch tensor on the model's device, so the CPU never touches a resized copy. Only the first three
bands are used (RGB): DINOv3 was trained on RGB, and a NIR band in the third slot would be read as
blue. Vectors are L2-normalised so that cosine distance is 1 - dot product in LanceDB, DuckDB and
numpy alike; the CLS norm before normalisation is kept, because a zero or NaN there flags a dead
input that a unit vector would hide.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from shapely import wkb
from shapely.geometry import box

from flywheel_core.embed.dinov3 import DinoModel
from flywheel_core.embed.schema import embedding_schema
from flywheel_core.geo.projection import reproject
from flywheel_core.imagery.vhr_chips import chip_image

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass
class EmbeddingOutput:
    cls: np.ndarray  # (N, D) float32, unit length (zero where the CLS token was zero)
    mean_patch: np.ndarray  # (N, D) float32, unit length; registers excluded
    norms: np.ndarray  # (N,) float32, CLS norm before normalisation
    patches: np.ndarray | None = None  # (N, P, D) float32, unit length per patch, row-major grid

    def __len__(self) -> int:
        return int(self.cls.shape[0])


def _rgb(images: np.ndarray) -> np.ndarray:
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 (0-255); got {images.dtype}: scale them first "
            "(embed_tile_rows does this for other dtypes)"
        )
    bands = images.shape[1]
    if bands >= 3:
        return images[:, :3]
    if bands == 1:
        return np.repeat(images, 3, axis=1)
    raise ValueError(f"images need 1 (grey) or at least 3 (RGB...) bands; got {bands}")


def preprocess(dino: DinoModel, images: np.ndarray) -> torch.Tensor:
    """(N, 3, S, S) pixel values on the model's device and dtype, as the model expects them."""
    rgb = _rgb(images)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(dino.device, torch.float32) / 255.0
    size = dino.image_size
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    mean = torch.tensor(dino.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(dino.std, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).to(dino.dtype)


def bare_forward(dino: DinoModel, batch: torch.Tensor) -> torch.Tensor:
    """The model forward alone on preprocessed pixels: `last_hidden_state` (N, 1+R+P, D)."""
    with torch.inference_mode():
        return dino.model(pixel_values=batch).last_hidden_state


def _unit(x: torch.Tensor) -> torch.Tensor:
    norm = x.norm(dim=-1, keepdim=True)
    # A zero vector stays zero (QA counts it) instead of becoming NaN by 0/0.
    return torch.where(norm > 0, x / norm.clamp_min(torch.finfo(x.dtype).tiny), x)


def split_tokens(dino: DinoModel, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(CLS (N, D), patch tokens (N, P, D)) of a last_hidden_state, register tokens dropped."""
    first_patch = 1 + dino.num_register_tokens
    return hidden[:, 0], hidden[:, first_patch:]


def embed_images(
    dino: DinoModel,
    images: np.ndarray,
    batch_size: int = 16,
    patch_vectors: bool = False,
    progress: Progress | None = None,
) -> EmbeddingOutput:
    """CLS and mean-patch vectors of (N, C, H, W) uint8 images, in batches of `batch_size`."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    rgb = _rgb(images)
    n = rgb.shape[0]
    cls_out: list[np.ndarray] = []
    mean_out: list[np.ndarray] = []
    norm_out: list[np.ndarray] = []
    patch_out: list[np.ndarray] = []
    for start in range(0, n, batch_size):
        batch = preprocess(dino, rgb[start : start + batch_size])
        hidden = bare_forward(dino, batch).float()
        cls, patches = split_tokens(dino, hidden)
        norm_out.append(cls.norm(dim=-1).cpu().numpy())
        cls_out.append(_unit(cls).cpu().numpy())
        mean_out.append(_unit(patches.mean(dim=1)).cpu().numpy())
        if patch_vectors:
            patch_out.append(_unit(patches).cpu().numpy())
        if progress is not None:
            progress(min(start + batch_size, n), n)
    dim = dino.dim
    if n == 0:
        empty = np.zeros((0, dim), dtype=np.float32)
        return EmbeddingOutput(
            empty,
            empty.copy(),
            np.zeros(0, dtype=np.float32),
            np.zeros((0, 0, dim), dtype=np.float32) if patch_vectors else None,
        )
    return EmbeddingOutput(
        cls=np.concatenate(cls_out).astype(np.float32),
        mean_patch=np.concatenate(mean_out).astype(np.float32),
        norms=np.concatenate(norm_out).astype(np.float32),
        patches=np.concatenate(patch_out).astype(np.float32) if patch_vectors else None,
    )


def tile_pixels(row: dict[str, Any]) -> np.ndarray:
    """A tile row's (C, H, W) uint8 pixels: uint8 as stored, other types stretched per band.

    Non-uint8 tiles (uint16 reflectance, float) have no fixed 0-255 mapping, so each band is
    stretched between its 2nd and 98th percentile, as a person would display it.
    """
    try:
        arr = chip_image(row)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"tile {row.get('uid')!r}: 'image' bytes do not match bands/height/width/dtype "
            f"({row.get('bands')}, {row.get('height')}, {row.get('width')}, {row.get('dtype')})"
        ) from exc
    if arr.dtype == np.uint8:
        return arr
    out = np.empty(arr.shape, dtype=np.uint8)
    for b, band in enumerate(arr.astype(np.float32)):
        finite = band[np.isfinite(band)]
        lo, hi = np.percentile(finite, (2, 98)) if finite.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        scaled = np.clip((np.nan_to_num(band, nan=lo) - lo) / (hi - lo), 0, 1)
        out[b] = (scaled * 255).round().astype(np.uint8)
    return out


def footprint_4326(row: dict[str, Any]) -> bytes | None:
    """The tile's footprint as EPSG:4326 WKB, reprojected when it is stored in the tile's CRS."""
    geom = wkb.loads(row["footprint"]) if row.get("footprint") else None
    if geom is None and row.get("transform") and row.get("crs"):
        a, b, c, d, e, f = row["transform"]
        w, h = row["width"], row["height"]
        corners = [(c + a * x + b * y, f + d * x + e * y) for x, y in ((0, 0), (w, h))]
        (x0, y0), (x1, y1) = corners
        geom = box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        return wkb.dumps(reproject(geom, row["crs"], 4326))
    if geom is None:
        return None
    minx, miny, maxx, maxy = geom.bounds
    in_degrees = -180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90
    if in_degrees:
        return wkb.dumps(geom)
    if not row.get("crs"):
        raise ValueError(
            f"tile {row.get('uid')!r}: footprint is not in degrees and the row has no 'crs' to "
            "reproject it from"
        )
    return wkb.dumps(reproject(geom, row["crs"], 4326))


def _center(row: dict[str, Any], footprint: bytes | None) -> tuple[float | None, float | None]:
    if row.get("center_lon") is not None and row.get("center_lat") is not None:
        return float(row["center_lon"]), float(row["center_lat"])
    if footprint is None:
        return None, None
    c = wkb.loads(footprint).centroid
    return float(c.x), float(c.y)


def _groups_by_shape(images: Sequence[np.ndarray]) -> dict[tuple[int, ...], list[int]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(img.shape, []).append(i)
    return groups


def embed_pixels(
    dino: DinoModel,
    images: Sequence[np.ndarray],
    batch_size: int = 16,
    patch_vectors: bool = False,
) -> EmbeddingOutput:
    """Vectors of (C, H, W) uint8 tiles in input order; tiles of different sizes batch by shape."""
    if not images:
        return embed_images(dino, np.zeros((0, 3, 1, 1), dtype=np.uint8), batch_size, patch_vectors)
    n, dim = len(images), dino.dim
    cls = np.zeros((n, dim), dtype=np.float32)
    mean = np.zeros_like(cls)
    norms = np.zeros(n, dtype=np.float32)
    patches: np.ndarray | None = None
    for shape, idx in _groups_by_shape(images).items():
        out = embed_images(dino, np.stack([images[i] for i in idx]), batch_size, patch_vectors)
        cls[idx], mean[idx], norms[idx] = out.cls, out.mean_patch, out.norms
        if out.patches is not None:
            if patches is None:
                patches = np.zeros((n, *out.patches.shape[1:]), dtype=np.float32)
            patches[idx] = out.patches
        log.debug("embedded %d tiles of shape %s", len(idx), shape)
    return EmbeddingOutput(cls, mean, norms, patches)


def embed_rows(
    dino: DinoModel,
    rows: list[dict[str, Any]],
    batch_size: int = 16,
    patch_vectors: bool = False,
) -> EmbeddingOutput:
    """Vectors of tile rows in input order (`tile_pixels` of each, then `embed_pixels`)."""
    return embed_pixels(dino, [tile_pixels(r) for r in rows], batch_size, patch_vectors)


def embedding_table(
    dino: DinoModel,
    rows: list[dict[str, Any]],
    out: EmbeddingOutput,
    dataset: str,
    created_at: datetime | None = None,
) -> pa.Table:
    """Rows of `embedding_schema(dino.dim)`: the tiles' identity and place beside their vectors."""
    schema = embedding_schema(dino.dim)
    if len(rows) != len(out):
        raise ValueError(f"{len(rows)} tile rows but {len(out)} vectors")
    if not rows:
        return schema.empty_table()
    n = len(rows)
    stamp = created_at or datetime.now(UTC)
    footprints = [footprint_4326(r) for r in rows]
    centers = [_center(r, fp) for r, fp in zip(rows, footprints, strict=True)]
    vec_type = schema.field("vector").type
    columns = {
        "uid": pa.array([r["uid"] for r in rows], pa.string()),
        "dataset": pa.array([dataset] * n, pa.string()),
        "tile_id": pa.array(
            [r.get("tile_id") or r.get("chip_id") or r["uid"] for r in rows], pa.string()
        ),
        "cell": pa.array([r.get("cell") for r in rows], pa.string()),
        "date": pa.array([r.get("date") for r in rows], pa.string()),
        "footprint": pa.array(footprints, pa.binary()),
        "center_lon": pa.array([c[0] for c in centers], pa.float64()),
        "center_lat": pa.array([c[1] for c in centers], pa.float64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(out.cls.ravel()), type=vec_type),
        "mean_patch": pa.FixedSizeListArray.from_arrays(
            pa.array(out.mean_patch.ravel()), type=vec_type
        ),
        "norm": pa.array(out.norms, pa.float32()),
        "model_id": pa.array([dino.model_id] * n, pa.string()),
        "trained": pa.array([dino.trained] * n, pa.bool_()),
        "created_at": pa.array([stamp] * n, schema.field("created_at").type),
    }
    return pa.table(columns, schema=schema)


def embed_tile_rows(
    dino: DinoModel,
    rows: list[dict[str, Any]],
    dataset: str,
    batch_size: int = 16,
) -> pa.Table:
    """Rows of `embedding_schema(dino.dim)` for tile rows in the vhr_chips / raster tile layout.

    Tiles of different sizes (edge tiles of a raster) are embedded in groups of equal shape;
    the output keeps the input order.
    """
    return embedding_table(dino, rows, embed_rows(dino, rows, batch_size), dataset)
