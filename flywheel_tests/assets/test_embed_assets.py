"""`dinov3_embeddings` materialized by Dagster on the tiny world (tiny random-weight DINOv3)."""

import duckdb
import lancedb
import pytest
from dagster import MultiPartitionKey, materialize

from flywheel_assets.embed.assets import dinov3_embeddings
from flywheel_assets.ingest.imagery import vhr_chips
from flywheel_core.embed.export import export_key
from flywheel_core.embed.patches import PATCH_TABLE
from flywheel_core.embed.qa import qa_metrics
from flywheel_core.embed.schema import EMBEDDINGS_TABLE
from flywheel_resources.object_store import ObjectStoreResource
from flywheel_tests.assets.conftest import NOWHERE
from flywheel_tests.fixtures.world import TINY_CELL, TINY_DATES

LATE = TINY_DATES[1].isoformat()

pytestmark = pytest.mark.slow


def _key(cell: str = TINY_CELL) -> MultiPartitionKey:
    return MultiPartitionKey({"cell": cell, "date": LATE})


def _run(env, cell: str = TINY_CELL, selection=None, config: dict | None = None):
    return materialize(
        [vhr_chips, dinov3_embeddings],
        selection=selection,
        partition_key=_key(cell),
        instance=env["instance"],
        resources=env["resources"],
        run_config={"ops": {"dinov3_embeddings": {"config": config}}} if config else None,
    )


def _lance(env, name: str, cell: str = TINY_CELL):
    db = lancedb.connect(str(env["root"] / "lancedb"))
    where = f"cell = '{cell}' AND date = '{LATE}'"
    return db.open_table(name).search().where(where).limit(None).to_arrow()


@pytest.fixture(scope="module")
def first_run(env):
    return _run(env)


def test_every_chip_gets_a_vector_and_the_checks_pass(env, first_run):
    checks = {e.check_name: e for e in first_run.get_asset_check_evaluations()}
    assert set(checks) >= {"coverage", "no_nan_vectors", "no_zero_vectors", "duplicate_vectors"}
    assert all(e.passed for e in checks.values()), {n: e.metadata for n, e in checks.items()}
    chips = _lance(env, "vhr_chips")
    vectors = _lance(env, EMBEDDINGS_TABLE)
    assert chips.num_rows >= 9
    assert sorted(vectors["uid"].to_pylist()) == sorted(chips["uid"].to_pylist())
    assert set(vectors["dataset"].to_pylist()) == {"vhr_chips"}
    assert set(vectors["trained"].to_pylist()) == {False}
    assert vectors.schema.field("vector").type.list_size == 48


def test_untrained_model_is_said_loudly_and_the_export_is_where_it_should_be(env, first_run):
    mat = first_run.asset_materializations_for_node("dinov3_embeddings")[0]
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["model_id"] == "dinov3-tiny-random" and meta["trained"] is False
    assert "UNTRAINED" in meta["warning"]
    assert meta["rows"] == meta["chips"] >= 9 and meta["dim"] == 48
    assert meta["index_status"].startswith("no index (exact search)")
    path = env["root"] / "objects" / export_key("vhr_chips", TINY_CELL, LATE)
    assert meta["export_uri"] == str(path.resolve()) and path.stat().st_size > 0
    assert meta["preview"].startswith("![")
    preview = env["root"] / "previews" / "dinov3_embeddings" / f"{TINY_CELL}_{LATE}.png"
    assert preview.stat().st_size > 1000
    m = qa_metrics(duckdb.connect(), str(path), expected_tiles=meta["chips"])
    assert m["rows"] == meta["rows"] and m["coverage"] == 1.0


def test_rerun_replaces_the_partition_and_can_add_patch_vectors(env, first_run):
    before = _lance(env, EMBEDDINGS_TABLE).sort_by("uid")
    result = _run(env, selection=[dinov3_embeddings], config={"patch_vectors": True})
    assert result.success
    after = _lance(env, EMBEDDINGS_TABLE).sort_by("uid")
    assert after.num_rows == before.num_rows == len(set(after["uid"].to_pylist()))
    assert after["vector"].to_pylist() == before["vector"].to_pylist()  # deterministic model
    patches = _lance(env, PATCH_TABLE)
    assert patches.num_rows == 16 * after.num_rows  # a 4 x 4 grid per chip for the tiny model
    assert set(patches["tile_uid"].to_pylist()) == set(after["uid"].to_pylist())
    exports = list((env["root"] / "objects" / "embeddings").rglob("*.parquet"))
    assert len(exports) == 1

    _run(env, selection=[dinov3_embeddings])  # without patch vectors: the stale ones go
    assert _lance(env, PATCH_TABLE).num_rows == 0
    assert _lance(env, EMBEDDINGS_TABLE).num_rows == before.num_rows


def test_a_cell_without_imagery_materializes_empty(env, first_run):
    result = _run(env, cell=NOWHERE)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["coverage"] and checks["no_nan_vectors"]
    mat = result.asset_materializations_for_node("dinov3_embeddings")[0]
    assert mat.metadata["rows"].value == 0
    assert "no vhr_chips" in mat.metadata["note"].value
    assert _lance(env, EMBEDDINGS_TABLE, cell=NOWHERE).num_rows == 0
    assert (env["root"] / "objects" / export_key("vhr_chips", NOWHERE, LATE)).exists()
    assert _lance(env, EMBEDDINGS_TABLE).num_rows >= 9  # the other cell untouched


def test_export_and_qa_through_s3(env, first_run, s3_env, s3_server):
    """The same asset with the object store on S3 (dagster-aws client, moto server)."""
    resources = {**env["resources"], "objects": ObjectStoreResource(root=s3_env)}
    result = materialize(
        [vhr_chips, dinov3_embeddings],
        selection=[dinov3_embeddings],
        partition_key=_key(),
        instance=env["instance"],
        resources=resources,
    )
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(
        ("coverage", "no_nan_vectors", "no_zero_vectors", "duplicate_vectors"), True
    )
    mat = result.asset_materializations_for_node("dinov3_embeddings")[0]
    uri = mat.metadata["export_uri"].value
    assert uri == f"{s3_env.rstrip('/')}/{export_key('vhr_chips', TINY_CELL, LATE)}"
    bucket_key = uri.removeprefix(f"s3://{s3_server.bucket}/")
    assert s3_server.keys(bucket_key) == [bucket_key]
    assert mat.metadata["rows"].value == _lance(env, EMBEDDINGS_TABLE).num_rows
