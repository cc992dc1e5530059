"""A search result as a person checks it: the query chip, then its neighbours, nearest first.

Pixels come from where the tiles live: `vhr_chips` for the flywheel's chips and `raster_tiles`
for tiles of registered raster datasets (same row layout). A tile whose pixels cannot be found
(a vector query, a table not materialized here) is drawn as a captioned placeholder rather than
failing: the sheet is a view of the result, and the result stands without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import lancedb
import numpy as np
from PIL import Image, ImageDraw

from flywheel_core.embed.search import SearchResult, uid_tail
from flywheel_core.lake.quote import sql_in
from flywheel_core.preview import placeholder, save, stretch
from flywheel_core.rasters.schema import RASTER_TILES_TABLE

log = logging.getLogger(__name__)

VHR_TABLE = "vhr_chips"
PIXEL_COLUMNS = ["uid", "image", "bands", "height", "width", "dtype"]
QUERY_FRAME = (0, 200, 255)
BACKGROUND = (24, 24, 24)
_CAPTION_H = 28
_IN_CHUNK = 200


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 of a (bands, H, W) tile: its first three bands (RGB by convention), or a
    single band as grey, stretched per tile so dark and bright scenes both show detail."""
    if image.ndim != 3 or image.shape[0] == 0:
        raise ValueError(f"a tile is (bands, height, width), got shape {image.shape}")
    bands = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    return stretch(np.nan_to_num(bands.transpose(1, 2, 0).astype(np.float32)), 1.0, 99.5)


def _tile_table(dataset: str | None) -> str:
    return VHR_TABLE if dataset in (None, VHR_TABLE) else RASTER_TILES_TABLE


def read_tiles(
    db: lancedb.DBConnection, refs: Iterable[tuple[str | None, str]]
) -> dict[str, np.ndarray]:
    """RGB arrays by uid for (dataset, uid) pairs; uids not found are simply absent."""
    wanted: dict[str, list[str]] = {}
    for dataset, uid in refs:
        wanted.setdefault(_tile_table(dataset), []).append(uid)
    names = set(db.table_names())
    out: dict[str, np.ndarray] = {}
    for table, uids in wanted.items():
        if table not in names:
            log.warning("no %s table: %d tile(s) drawn as placeholders", table, len(uids))
            continue
        tbl = db.open_table(table)
        unique = sorted(set(uids))
        for i in range(0, len(unique), _IN_CHUNK):
            rows = (
                tbl.search()
                .where(sql_in("uid", unique[i : i + _IN_CHUNK]))
                .select(PIXEL_COLUMNS)
                .limit(None)
                .to_arrow()
                .to_pylist()
            )
            for r in rows:
                pixels = np.frombuffer(r["image"], dtype=r["dtype"])
                out[r["uid"]] = to_rgb(pixels.reshape(r["bands"], r["height"], r["width"]))
    return out


def _placeholder(size: int, text: str) -> np.ndarray:
    return np.asarray(placeholder(text, (size, size)))


def sheet(
    tiles: Sequence[np.ndarray],
    captions: Sequence[tuple[str, str]],
    *,
    tile: int = 160,
    cols: int = 6,
    framed: Sequence[int] = (0,),
) -> Image.Image:
    """Grid of RGB tiles with two caption lines each; tiles listed in `framed` get a frame."""
    n = max(len(tiles), 1)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    width = tile + 4
    out = Image.new("RGB", (cols * width, rows * (width + _CAPTION_H)), BACKGROUND)
    draw = ImageDraw.Draw(out)
    limit = tile // 6  # characters of the default font that fit under a tile
    for i, arr in enumerate(tiles):
        x, y = (i % cols) * width, (i // cols) * (width + _CAPTION_H)
        im = Image.fromarray(arr).resize((tile, tile), Image.Resampling.NEAREST)
        out.paste(im, (x + 2, y + 2))
        if i in framed:
            draw.rectangle((x, y, x + width - 1, y + width - 1), outline=QUERY_FRAME, width=2)
        first, second = captions[i]
        draw.text((x + 3, y + width + 1), first[:limit], fill=(235, 235, 235))
        draw.text((x + 3, y + width + 14), second[-limit:], fill=(170, 170, 170))
    return out


def search_sheet(
    db: lancedb.DBConnection, result: SearchResult, *, tile: int = 160, cols: int = 6
) -> Image.Image:
    """The query tile (framed) followed by the hits, each captioned with distance and uid tail."""
    q = result.query
    refs: list[tuple[str | None, str]] = [(h.dataset, h.uid) for h in result.hits]
    if q.uid is not None:
        refs.append((q.dataset, q.uid))
    pixels = read_tiles(db, refs)
    tiles, captions = [], []
    if q.uid is not None:
        label = "query (point)" if q.kind == "point" else "query"
        tiles.append(pixels.get(q.uid, _placeholder(tile, "no pixels\n" + uid_tail(q.uid))))
        captions.append((label, uid_tail(q.uid)))
    else:
        tiles.append(_placeholder(tile, "query vector"))
        captions.append(("query", "vector"))
    for h in result.hits:
        tiles.append(pixels.get(h.uid, _placeholder(tile, "no pixels")))
        captions.append((f"#{h.rank} d={h.distance:.4f}", uid_tail(h.uid)))
    if result.untrained:
        captions[0] = (captions[0][0] + " UNTRAINED", captions[0][1])
    return sheet(tiles, captions, tile=tile, cols=cols)


def write_search_sheet(
    db: lancedb.DBConnection, result: SearchResult, path: str | Path, **kwargs: int
) -> Path:
    return save(search_sheet(db, result, **kwargs), Path(path))
