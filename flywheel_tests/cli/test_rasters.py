"""`flywheel rasters register | list | show` against a data folder of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from flywheel_cli.main import cli
from flywheel_tests.fixtures.rasters import RasterFiles
from flywheel_tests.fixtures.s3 import S3Server


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "FLYWHEEL_LANCEDB_URI",
        "FLYWHEEL_LAKE_CATALOG",
        "FLYWHEEL_LAKE_DATA_PATH",
        "FLYWHEEL_OBJECT_STORE",
        "FLYWHEEL_CHIP_SIZE",
        "FLYWHEEL_CHIP_OVERLAP",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_register_list_show(raster_files: RasterFiles, data_dir: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(
        cli,
        ["rasters", "register", str(raster_files.striped), "--name", "munich", "--overlap", "32"],
    )
    assert first.exit_code == 0, first.output
    assert "registered, ready: 9 tiles in raster_tiles" in first.output
    assert "(converted)" in first.output
    dataset_id = first.output.split()[0]
    assert (data_dir / "objects" / "rasters" / dataset_id / "tiles.parquet").exists()
    again = runner.invoke(
        cli, ["rasters", "register", str(raster_files.striped), "--overlap", "32"]
    )
    assert again.exit_code == 0 and "already registered, ready" in again.output
    listed = runner.invoke(cli, ["rasters", "list"])
    assert listed.exit_code == 0
    assert dataset_id in listed.output and "munich" in listed.output and "640x576" in listed.output
    shown = runner.invoke(cli, ["rasters", "show", dataset_id[:8]])
    assert shown.exit_code == 0, shown.output
    assert "EPSG:32632" in shown.output and "pass  lance_rows_match" in shown.output
    assert "FAIL" not in shown.output


@pytest.mark.parametrize(
    ("kind", "message"),
    [("text", "not a raster"), ("no_crs", "has no CRS"), ("truncated", "truncated")],
)
def test_bad_files_are_clear_errors_and_register_nothing(
    raster_files: RasterFiles, data_dir: Path, kind: str, message: str
) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["rasters", "register", str(getattr(raster_files, kind))])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert "no raster datasets registered" in runner.invoke(cli, ["rasters", "list"]).output


def test_bad_options_and_unknown_ids(raster_files: RasterFiles, data_dir: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(
        cli, ["rasters", "register", str(raster_files.cog), "--tile-size", "64", "--overlap", "64"]
    )
    assert bad.exit_code != 0 and "overlap must be in [0, tile size)" in bad.output
    missing = runner.invoke(cli, ["rasters", "show", "rd-nope"])
    assert missing.exit_code != 0 and "no raster dataset 'rd-nope'" in missing.output


def test_register_from_s3_with_the_object_store_on_s3(
    raster_files: RasterFiles,
    data_dir: Path,
    s3_server: S3Server,
    s3_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flywheel_core.store.objects import split_s3

    bucket, prefix = split_s3(s3_env)
    s3_server.client().upload_file(str(raster_files.cog), bucket, f"{prefix}in/scene.tif")
    monkeypatch.setenv("FLYWHEEL_OBJECT_STORE", f"{s3_env}objects")
    result = CliRunner().invoke(cli, ["rasters", "register", f"{s3_env}in/scene.tif"])
    assert result.exit_code == 0, result.output
    dataset_id = result.output.split()[0]
    assert s3_server.keys(f"{prefix}objects/rasters/{dataset_id}/") == [
        f"{prefix}objects/rasters/{dataset_id}/tiles.parquet"  # a COG already: not copied
    ]
    missing = CliRunner().invoke(cli, ["rasters", "register", f"{s3_env}in/nope.tif"])
    assert missing.exit_code != 0 and "no such object" in missing.output


def test_embed_a_registered_dataset(raster_files: RasterFiles, data_dir: Path) -> None:
    import lancedb

    runner = CliRunner()
    reg = runner.invoke(cli, ["rasters", "register", str(raster_files.striped)])
    assert reg.exit_code == 0, reg.output
    dataset_id = reg.output.split()[0]
    for _ in range(2):  # a re-run replaces the dataset's partitions, it adds nothing
        run = runner.invoke(cli, ["rasters", "embed", dataset_id[:10], "--model", "tiny"])
        assert run.exit_code == 0, run.output
        assert "RANDOM weights" in run.output and "coverage 1.000" in run.output
    table = lancedb.connect(str(data_dir / "lancedb")).open_table("dinov3_embeddings")
    rows = table.search().where(f"dataset = '{dataset_id}'").limit(None).to_arrow()
    tiles = lancedb.connect(str(data_dir / "lancedb")).open_table("raster_tiles")
    assert rows.num_rows == tiles.count_rows(f"dataset = '{dataset_id}'") > 0
    assert len(set(rows["uid"].to_pylist())) == rows.num_rows
    assert not any(rows["trained"].to_pylist())
    exports = list((data_dir / "objects" / "embeddings" / dataset_id).rglob("*.parquet"))
    assert exports and all("cell=" in str(p) and "date=" in str(p) for p in exports)


def test_embed_refuses_unknown_and_failed_datasets(data_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["rasters", "embed", "rd-nope"])
    assert result.exit_code != 0 and "matches 0 datasets" in result.output
