"""The `raster_datasets` rows: ids, round trips, one snapshot per write, allowed transitions."""

from __future__ import annotations

import pytest

from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_core.rasters.registry import (
    FAILED,
    READY,
    RasterDataset,
    TransitionError,
    find_datasets,
    get_dataset,
    list_datasets,
    make_dataset_id,
    record_dataset,
)
from flywheel_tests.fixtures.rasters import Stores


def _ds(dataset_id: str, status: str) -> RasterDataset:
    return RasterDataset(
        dataset_id=dataset_id,
        name="scene",
        kind="raster",
        uri="/data/scene.tif",
        checksum_sha256="ab" * 32,
        status=status,
        band_names=["red", "nir"],
        tile_count=4,
        params={"tile_size": 256},
        checks={"tile_ids_unique": {"passed": status == READY}},
        error=None if status == READY else "checks failed: tile_ids_unique",
    )


def test_ids_follow_the_bytes_and_the_tiling() -> None:
    a = make_dataset_id("ab" * 32, {"tile_size": 256, "overlap": 0})
    assert a == make_dataset_id("ab" * 32, {"overlap": 0, "tile_size": 256})
    assert a.startswith("rd-") and len(a) == 19
    assert a != make_dataset_id("ab" * 32, {"tile_size": 512, "overlap": 0})
    assert a != make_dataset_id("cd" * 32, {"tile_size": 256, "overlap": 0})


def test_round_trip_and_transitions(stores: Stores) -> None:
    with lake_connection(stores.lake) as con:
        before = current_snapshot_id(con)
        record_dataset(con, _ds("rd-1", FAILED))
        assert current_snapshot_id(con) == before + 1  # one transaction, one snapshot
        failed = get_dataset(con, "rd-1")
        assert failed is not None and failed.status == FAILED and failed.error
        assert failed.band_names == ["red", "nir"] and failed.params == {"tile_size": 256}
        record_dataset(con, _ds("rd-1", READY))  # a retry replaces the failed row
        ready = get_dataset(con, "rd-1")
        assert ready.ready and ready.error is None
        assert ready.created_at == failed.created_at and ready.updated_at > failed.updated_at
        snapshot = current_snapshot_id(con)
        with pytest.raises(TransitionError, match="already ready"):
            record_dataset(con, _ds("rd-1", FAILED))
        assert current_snapshot_id(con) == snapshot and get_dataset(con, "rd-1").ready
        record_dataset(con, _ds("rd-1", FAILED), replace_ready=True)  # a forced rebuild
        assert get_dataset(con, "rd-1").status == FAILED
        assert len(list_datasets(con)) == 1
        with pytest.raises(TransitionError, match="status"):
            record_dataset(con, _ds("rd-2", "registering"))
        assert get_dataset(con, "rd-2") is None


def test_find_by_prefix(stores: Stores) -> None:
    with lake_connection(stores.lake) as con:
        for i in ("rd-aa1", "rd-aa2", "rd-b_1"):
            record_dataset(con, _ds(i, READY))
        assert [d.dataset_id for d in find_datasets(con, "rd-aa")] == ["rd-aa1", "rd-aa2"]
        assert [d.dataset_id for d in find_datasets(con, "rd-b_")] == ["rd-b_1"]
        assert find_datasets(con, "rd-_") == []  # '_' is literal, not a wildcard
        assert [d.dataset_id for d in list_datasets(con, status=READY)] == [
            "rd-aa1", "rd-aa2", "rd-b_1"
        ]  # fmt: skip
