from __future__ import annotations

import lancedb
import numpy as np
import pytest
from PIL import Image

from flywheel_core.embed.contact_sheet import (
    QUERY_FRAME,
    read_tiles,
    search_sheet,
    to_rgb,
    write_search_sheet,
)
from flywheel_core.embed.search import search
from flywheel_tests.embed.embedding_rows import grid_rows, pixel_table, unit, write

CELL, DAY = "479e758c4", "2024-06-01"
TILE = 64
PAD = 4
CAPTION = 28


@pytest.fixture
def db(tmp_path):
    db = lancedb.connect(str(tmp_path / "lancedb"))
    vecs = unit(np.random.default_rng(5), 9, 8)
    table = grid_rows(CELL, DAY, vecs, 3)
    write(db, table)
    uids = table.column("uid").to_pylist()
    db.create_table("vhr_chips", pixel_table(uids[:8]))  # the last chip has no pixels
    return db


def _tile_at(img: Image.Image, i: int, cols: int) -> np.ndarray:
    x, y = (i % cols) * (TILE + PAD), (i // cols) * (TILE + PAD + CAPTION)
    return np.asarray(img)[y + 2 : y + 2 + TILE, x + 2 : x + 2 + TILE]


def _dominant(arr: np.ndarray) -> int:
    return int(np.argmax(arr.reshape(-1, 3).mean(axis=0)))


def test_sheet_shows_the_query_then_the_hits_in_order(db, tmp_path):
    uids = db.open_table("dinov3_embeddings").search().select(["uid"]).limit(None).to_arrow()
    uids = sorted(uids.column("uid").to_pylist())
    query_uid = uids[4]
    result = search(db, chip=query_uid, k=8)
    path = write_search_sheet(db, result, tmp_path / "sheet.png", tile=TILE, cols=3)
    img = Image.open(path).convert("RGB")
    assert img.size == (3 * (TILE + PAD), 3 * (TILE + PAD + CAPTION))  # query + 8 hits
    order = [query_uid] + [h.uid for h in result.hits]
    for i, uid in enumerate(order):
        tile = _tile_at(img, i, 3)
        k = uids.index(uid)
        if k == 8:  # no pixels stored for it: a grey placeholder
            assert tile.std(axis=2).mean() < 5
        else:
            assert _dominant(tile) == k % 3, uid
    assert tuple(np.asarray(img)[0, 5]) == QUERY_FRAME  # the query is framed
    assert tuple(np.asarray(img)[0, TILE + PAD + 5]) != QUERY_FRAME  # a hit is not


def test_vector_query_and_missing_tables_give_placeholders(db, tmp_path):
    q = np.ones(8, dtype=np.float32)
    result = search(db, vector=q, k=2)
    img = search_sheet(db, result, tile=TILE, cols=3)
    assert img.size == (3 * (TILE + PAD), TILE + PAD + CAPTION)
    assert _tile_at(img, 0, 3).std(axis=2).mean() < 5  # the query vector has no pixels: grey
    stored = db.open_table("vhr_chips").search().select(["uid"]).limit(None).to_arrow()
    uids = sorted(stored.column("uid").to_pylist())
    drawn = [(i, h.uid) for i, h in enumerate(result.hits, start=1) if h.uid in uids]
    assert drawn  # at least one hit has pixels, drawn in its own colour
    for i, uid in drawn:
        assert _dominant(_tile_at(img, i, 3)) == uids.index(uid) % 3
    empty = lancedb.connect(str(tmp_path / "other"))
    assert read_tiles(empty, [("vhr_chips", "a"), ("my-raster", "b")]) == {}


def test_tiles_of_raster_datasets_come_from_raster_tiles(db):
    db.create_table("raster_tiles", pixel_table(["ortho|t1", "ortho|t2"], 1, dataset="ortho"))
    tiles = read_tiles(db, [("ortho", "ortho|t2"), ("vhr_chips", "nope")])
    assert list(tiles) == ["ortho|t2"]
    grey = tiles["ortho|t2"]
    assert grey.shape == (32, 32, 3) and (grey[..., 0] == grey[..., 2]).all()


def test_to_rgb_rejects_a_flat_array():
    with pytest.raises(ValueError, match="bands, height, width"):
        to_rgb(np.zeros((32, 32)))
