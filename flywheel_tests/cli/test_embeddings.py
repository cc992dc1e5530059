"""`flywheel embeddings qa | nearest`: DuckDB over the Parquet export of a registered raster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from flywheel_cli.main import cli
from flywheel_tests.cli.test_rasters import data_dir  # noqa: F401  (fixture)
from flywheel_tests.fixtures.rasters import RasterFiles


@pytest.fixture
def embedded(raster_files: RasterFiles, data_dir: Path) -> tuple[str, Path]:  # noqa: F811
    runner = CliRunner()
    reg = runner.invoke(cli, ["rasters", "register", str(raster_files.striped), "--overlap", "32"])
    assert reg.exit_code == 0, reg.output
    dataset_id = reg.output.split()[0]
    run = runner.invoke(cli, ["rasters", "embed", dataset_id])
    assert run.exit_code == 0, run.output
    return dataset_id, data_dir


def test_qa_over_the_whole_export(embedded: tuple[str, Path]) -> None:
    dataset_id, _ = embedded
    out = CliRunner().invoke(cli, ["embeddings", "qa", "--dataset", dataset_id])
    assert out.exit_code == 0, out.output
    lines = dict(line.split(None, 1) for line in out.output.splitlines()[1:] if line.strip())
    assert lines["rows"] == "9" and lines["expected_tiles"] == "9"
    assert lines["coverage"] == "1.0000" and lines["nan_vectors"] == "0"
    assert lines["trained"].startswith("False")


def test_nearest_matches_exact_search_on_the_export(embedded: tuple[str, Path]) -> None:
    dataset_id, folder = embedded
    files = sorted((folder / "objects" / "embeddings" / dataset_id).rglob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f, columns=["uid", "vector"]) for f in files])
    uids = table["uid"].to_pylist()
    vectors = np.array(table["vector"].to_pylist(), dtype=np.float32)
    q = 4
    distance = 1 - vectors @ vectors[q]
    order = [i for i in np.argsort(distance, kind="stable") if i != q][:3]
    out = CliRunner().invoke(
        cli, ["embeddings", "nearest", "--chip", uids[q], "--dataset", dataset_id, "-k", "3"]
    )
    assert out.exit_code == 0, out.output
    rows = [line.split() for line in out.output.splitlines()[2:]]
    assert [r[2] for r in rows] == [uids[i] for i in order]
    assert np.allclose([float(r[1]) for r in rows], distance[order], atol=1e-4)


def test_clear_errors(embedded: tuple[str, Path], tmp_path: Path) -> None:
    dataset_id, _ = embedded
    runner = CliRunner()
    none = runner.invoke(cli, ["embeddings", "qa", "--dataset", "rd-unknown"])
    assert none.exit_code != 0 and "no embedding Parquet" in none.output
    unknown = runner.invoke(cli, ["embeddings", "nearest", "--chip", "x", "--dataset", dataset_id])
    assert unknown.exit_code != 0 and "no chip 'x'" in unknown.output
    bad = tmp_path / "v.json"
    bad.write_text("[1, 2, 3]")
    wrong = runner.invoke(
        cli, ["embeddings", "nearest", "--vector", str(bad), "--dataset", dataset_id]
    )
    assert wrong.exit_code != 0 and "expected 48" in wrong.output
