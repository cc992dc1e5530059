"""End to end on real layouts: EarthView VHR + Sentinel-2 from a STAC API, through the assets.

`vhr_chips` and `msi_chips` for one partition from the EarthView fixture and the served STAC
API, then `sam_masks` and `training_data` on labels imported for it: the code a user's data
goes through, over HTTP on 127.0.0.1 for the STAC API and its COGs.
"""

import lancedb
import numpy as np
import pytest
from dagster import DagsterInstance, MultiPartitionKey, materialize

from flywheel_assets.ingest.imagery import msi_chips, vhr_chips
from flywheel_assets.ingest.labels import seed_labels
from flywheel_assets.masks.assets import sam_masks, training_data
from flywheel_assets.partitions import S2_CELLS_NAME
from flywheel_core.labels.ingest import import_label_file
from flywheel_core.lake.connection import LakeConfig, lake_connection
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.gpu import GPUResource
from flywheel_resources.imagery import ImageryResource
from flywheel_resources.lancedb_io import LanceDBIOManager, LanceDBResource
from flywheel_resources.object_store import ObjectStoreResource
from flywheel_tests.fixtures import real_layouts, stac_api

pytestmark = pytest.mark.slow
CHAIN = [seed_labels, vhr_chips, msi_chips, sam_masks, training_data]
DAY = real_layouts.PARTITION_DATE.isoformat()


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_layouts")
    layouts = real_layouts.prepare(root / "inputs")
    lake = LakeConfig(catalog=f"duckdb:{root / 'catalog.ducklake'}", data_path=str(root / "lake"))
    with lake_connection(lake) as con:
        import_label_file(con, layouts.labels, source="test-pv", s2_level=15, h3_resolution=11)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(S2_CELLS_NAME, [layouts.cell])
    with stac_api.serve(root / "stac") as api:
        env = layouts.imagery_env(api.url)
        imagery = ImageryResource(
            vhr_source=env["FLYWHEEL_VHR_SOURCE"],
            vhr_root=env["FLYWHEEL_VHR_ROOT"],
            msi_source=env["FLYWHEEL_MSI_SOURCE"],
            msi_root=env["FLYWHEEL_MSI_ROOT"],
            cache_dir=str(root / "imagery"),
            previews_dir=str(root / "previews"),
        )
        resources = {
            "ducklake": DuckLakeResource(catalog=lake.catalog, data_path=lake.data_path),
            "lance_io": LanceDBIOManager(uri=str(root / "lancedb")),
            "imagery": imagery,
            "gpu": GPUResource(device="cpu", model_dir=str(root / "models")),
            "lancedb": LanceDBResource(uri=str(root / "lancedb")),
            "objects": ObjectStoreResource(root=str(root / "objects")),
        }
        key = MultiPartitionKey({"cell": layouts.cell, "date": DAY})
        result = materialize(CHAIN, partition_key=key, instance=instance, resources=resources)
        requests = list(api.requests)
    return {"root": root, "result": result, "cell": layouts.cell, "requests": requests}


def _rows(chain, name):
    db = lancedb.connect(str(chain["root"] / "lancedb"))
    where = f"cell = '{chain['cell']}' AND date = '{DAY}'"
    return db.open_table(name).search().where(where).limit(None).to_arrow().to_pylist()


def test_the_chain_runs_on_real_layouts(chain):
    assert chain["result"].success
    checks = {e.check_name: e.passed for e in chain["result"].get_asset_check_evaluations()}
    assert all(checks.values()), checks
    searched = [r for r in chain["requests"] if r[1].startswith("/search")]
    ranged = [r for r in chain["requests"] if r[2]]  # COG windows read with Range requests
    assert searched and ranged


def test_vhr_chips_come_from_the_earthview_mosaic(chain):
    rows = _rows(chain, "vhr_chips")
    assert rows
    assert {r["scene_id"].startswith("earthview-2024-06-10") for r in rows} == {True}
    assert {r["dtype"] for r in rows} == {"uint8"} and {r["gsd_m"] for r in rows} == {1.0}
    assert all(r["scene_href"].startswith(str(chain["root"] / "imagery")) for r in rows)
    assert rows[0]["band_names"] == ["red", "green", "blue", "nir"]


def test_msi_chips_are_reflectance_from_the_clear_stac_day(chain):
    vhr, msi = _rows(chain, "vhr_chips"), _rows(chain, "msi_chips")
    assert {r["uid"] for r in msi} == {r["uid"] for r in vhr}
    assert all("20240610" in r["scene_id"] or "2024-06-10" in r["scene_id"] for r in msi)
    for r in msi:
        refl = np.frombuffer(r["reflectance"], np.float32).reshape(-1, r["height"], r["width"])
        valid = np.frombuffer(r["valid"], np.uint8).reshape(r["height"], r["width"]).astype(bool)
        assert valid.mean() > 0.9 and r["cloud_fraction"] < 0.05  # the cloudy 15th: ~0.5
        assert float(refl[:, valid].min()) >= 0.0 and float(refl[:, valid].max()) < 1.0


def test_masks_and_training_data_for_the_imported_labels(chain):
    masks = _rows(chain, "sam_masks")
    assert any(m["accepted"] for m in masks)
    samples = _rows(chain, "training_data")
    positives = [s for s in samples if not s["metadata"]["negative"]]
    assert positives
    for s in positives:
        c, h, w = s["metadata"]["msi_shape"]
        assert c > 10 and np.frombuffer(s["msi_image_chip"], np.float32).size == c * h * w


def test_a_source_error_fails_the_run_in_one_line_and_writes_nothing(tmp_path):
    instance = DagsterInstance.ephemeral()
    cell = stac_api.CELL
    instance.add_dynamic_partitions(S2_CELLS_NAME, [cell])
    (tmp_path / "empty").mkdir()
    resources = {
        "ducklake": DuckLakeResource(
            catalog=f"duckdb:{tmp_path / 'catalog.ducklake'}", data_path=str(tmp_path / "lake")
        ),
        "lance_io": LanceDBIOManager(uri=str(tmp_path / "lancedb")),
        "imagery": ImageryResource(
            vhr_source="earthview",
            vhr_root=str(tmp_path / "empty"),
            msi_source="stac-api",
            msi_root=stac_api.closed_port_url(),
            cache_dir=str(tmp_path / "imagery"),
            previews_dir=str(tmp_path / "previews"),
        ),
        "lancedb": LanceDBResource(uri=str(tmp_path / "lancedb")),
        "objects": ObjectStoreResource(root=str(tmp_path / "objects")),
    }
    key = MultiPartitionKey({"cell": cell, "date": DAY})
    result = materialize(
        [vhr_chips],
        partition_key=key,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message.strip()
    assert f"earthview: cell {cell}, {DAY}: " in message and "index" in message
    assert not (tmp_path / "lancedb" / "vhr_chips.lance").exists()
    assert not list(tmp_path.glob("imagery/**/*.tif"))  # no window written either
