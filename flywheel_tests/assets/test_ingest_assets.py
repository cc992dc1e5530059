"""`seed_labels`, `vhr_chips` and `msi_chips` materialized by Dagster on the tiny world."""

from pathlib import Path

import geopandas as gpd
import lancedb
import pytest
from dagster import MultiPartitionKey, materialize
from shapely import wkb

from flywheel_assets.ingest.imagery import msi_chips, vhr_chips
from flywheel_assets.ingest.labels import seed_labels
from flywheel_core.geo.projection import buffer_m
from flywheel_core.geo.s2 import cell_polygon
from flywheel_tests.assets.conftest import NOWHERE
from flywheel_tests.fixtures.world import TINY_CELL, TINY_DATES

LATE = TINY_DATES[1]
ASSETS = [seed_labels, vhr_chips, msi_chips]

pytestmark = pytest.mark.slow


def _run(env, cell):
    return materialize(
        ASSETS,
        partition_key=MultiPartitionKey({"cell": cell, "date": LATE.isoformat()}),
        instance=env["instance"],
        resources=env["resources"],
    )


def _table(env, name, cell=TINY_CELL):
    db = lancedb.connect(str(env["root"] / "lancedb"))
    where = f"cell = '{cell}' AND date = '{LATE.isoformat()}'"
    return db.open_table(name).search().where(where).limit(None).to_arrow()


@pytest.fixture(scope="module")
def first_run(env):
    return _run(env, TINY_CELL)


def test_all_checks_pass_and_previews_exist(env, first_run):
    evaluations = first_run.get_asset_check_evaluations()
    assert len(evaluations) == 7
    assert all(e.passed for e in evaluations), [(e.check_name, e.metadata) for e in evaluations]
    for name in ("seed_labels", "vhr_chips", "msi_chips"):
        mat = first_run.asset_materializations_for_node(name)[0]
        assert mat.metadata["preview"].value.startswith("![")
        assert (env["root"] / "previews" / name / f"{TINY_CELL}_{LATE}.png").stat().st_size > 1000
        path = Path(mat.metadata["preview_path"].value)  # absolute, as every other path
        assert path.is_absolute() and path.is_file(), path
    coverage = first_run.asset_materializations_for_node("vhr_chips")[0].metadata["cell_coverage"]
    assert 0.0 < coverage.value <= 1.0 and coverage.value == round(coverage.value, 4)


def test_seed_labels_are_the_seeds_that_touch_the_cell(env, first_run):
    seeds = gpd.read_parquet(env["world"].seed_labels_path)
    area = cell_polygon(TINY_CELL)
    expected = {
        row.source_id
        for row in seeds.itertuples()
        if (
            buffer_m(row.geometry, 5.0) if row.geometry.geom_type == "Point" else row.geometry
        ).intersects(area)
    }
    table = _table(env, "seed_labels")
    assert expected and set(table["source_id"].to_pylist()) == expected
    assert set(table["cell"].to_pylist()) == {TINY_CELL}
    assert table["ducklake_snapshot_id"][0].as_py() > 0


def test_chips_and_msi_are_aligned_and_indexed(env, first_run):
    vhr = _table(env, "vhr_chips")
    msi = _table(env, "msi_chips")
    assert vhr.num_rows >= 9 and msi.num_rows == vhr.num_rows
    assert set(vhr["chip_id"].to_pylist()) == set(msi["chip_id"].to_pylist())
    area = cell_polygon(TINY_CELL)
    for fp in vhr["footprint"].to_pylist():
        assert area.contains(wkb.loads(fp).centroid)
    assert all(h.startswith("8") for h in vhr["h3_cell"].to_pylist())
    assert all(t.startswith(TINY_CELL[:6]) for t in vhr["s2_token"].to_pylist())
    assert set(msi["index_names"][0].as_py()) >= {"ndvi", "ndbi", "ndwi", "pvi"}


def test_rerun_replaces_the_partition_exactly(env, first_run):
    before = {
        n: sorted(_table(env, n)["uid"].to_pylist())
        for n in ("seed_labels", "vhr_chips", "msi_chips")
    }
    second = _run(env, TINY_CELL)
    assert second.success
    after = {n: sorted(_table(env, n)["uid"].to_pylist()) for n in before}
    assert after == before
    mat = second.asset_materializations_for_node("vhr_chips")[0]
    assert mat.metadata["rows_inserted"].value == 0 and mat.metadata["rows_deleted"].value == 0


def test_empty_cell_materializes_empty_with_a_message(env, first_run):
    result = _run(env, NOWHERE)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    for name in ("seed_labels", "vhr_chips", "msi_chips"):
        assert _table(env, name, NOWHERE).num_rows == 0
    logs = env["instance"].all_logs(result.run_id)
    text = " ".join(str(r.user_message) for r in logs)
    assert "synthetic: no vhr scene covers cell" in text
    assert "no active labels intersect cell" in text
    # Previously materialized partitions are untouched.
    assert _table(env, "vhr_chips").num_rows > 0
