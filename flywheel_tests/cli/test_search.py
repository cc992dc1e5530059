from __future__ import annotations

import json
import re
from datetime import date

import lancedb
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from flywheel_cli.main import cli
from flywheel_core.lake.connection import LakeConfig, lake_connection
from flywheel_tests.embed.embedding_rows import (
    CHIP_M,
    chip_uid,
    grid_rows,
    pixel_table,
    unit,
    write,
)
from flywheel_tests.flywheel.conftest import import_seeds
from flywheel_tests.flywheel.shapes import at, square

CELL, DAY = "479e758c4", "2024-06-01"
DIM = 12


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "data"))
    for name in ("FLYWHEEL_LANCEDB_URI", "FLYWHEEL_LAKE_CATALOG", "FLYWHEEL_LAKE_DATA_PATH"):
        monkeypatch.delenv(name, raising=False)
    db = lancedb.connect(str(tmp_path / "data" / "lancedb"))
    table = grid_rows(CELL, DAY, unit(np.random.default_rng(2), 16, DIM), 4)
    write(db, table)
    db.create_table("vhr_chips", pixel_table(table.column("uid").to_pylist()))
    return tmp_path / "data"


def _run(*args):
    return CliRunner().invoke(cli, ["search", *args])


def test_chip_search_prints_hits_and_writes_a_sheet(data):
    uid = chip_uid(CELL, DAY, 1, 1)
    out = _run("--chip", uid, "-k", "4")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith(f"query: chip -> chip {uid}")
    rows = [ln for ln in lines if re.match(r"^\s+\d+\s+\d\.\d{4}\s", ln)]
    assert len(rows) == 4 and uid not in "".join(rows)
    distances = [float(r.split()[1]) for r in rows]
    assert distances == sorted(distances)
    assert "random-weight model" in out.output  # the rows say trained = false
    sheet = data / "previews" / "search" / f"chip_{CELL}_{DAY}_r00256c00256_k4.png"
    assert f"contact sheet: {sheet}" in out.output
    assert Image.open(sheet).size[0] > 0


def test_json_output_and_point_and_vector_queries(data, tmp_path):
    lon, lat = at(0.5 * CHIP_M, -2.5 * CHIP_M)  # inside chip (2, 0)
    out = _run("--point", str(lon), str(lat), "-k", "3", "--json", "--no-sheet")
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["query"]["uid"] == chip_uid(CELL, DAY, 2, 0)
    assert len(result["hits"]) == 3 and result["sheet"] is None
    assert result["hits"][0]["footprint_wkt"].startswith("POLYGON")
    path = tmp_path / "q.json"
    path.write_text(json.dumps([0.5] * DIM))
    sheet = tmp_path / "out" / "v.png"
    out = _run("--vector", str(path), "-k", "2", "--sheet", str(sheet), "--date", DAY)
    assert out.exit_code == 0, out.output
    assert "query: a 12-d vector" in out.output and sheet.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chip", "479e758c4|2024-06-01|r09999c09999"], "no embedding for chip"),
        (["--point", "-122.4194", "37.7749"], "no chip within"),
        (["--point", "11.571", "48.14"], "nearest chip centre"),
        (["--split", "val", "--chip", chip_uid(CELL, DAY, 0, 0)], "materialize training_data"),
        (["--date", "June", "--chip", "x"], "ISO date"),
        ([], "exactly one of"),
        (["--chip", "x", "--point", "1", "2"], "got --chip, --point"),
    ],
)
def test_bad_queries_are_clear_errors(data, args, message):
    out = _run(*args)
    assert out.exit_code != 0
    assert message in out.output
    assert "Traceback" not in out.output


def test_wrong_vector_width_and_empty_database(data, tmp_path, monkeypatch):
    np.save(tmp_path / "v.npy", np.ones(5, dtype=np.float32))
    out = _run("--vector", str(tmp_path / "v.npy"))
    assert out.exit_code != 0 and "has 5 values; the embeddings have 12" in out.output
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "nothing"))
    out = _run("--vector", str(tmp_path / "v.npy"))
    assert out.exit_code != 0 and "materialize dinov3_embeddings first" in out.output


def test_label_status_filter_reads_the_lake(data, tmp_path):
    lake = LakeConfig(  # the lake the CLI opens by default under FLYWHEEL_DATA_DIR
        catalog=f"duckdb:{data / 'lake' / 'catalog.ducklake'}",
        data_path=str(data / "lake" / "files"),
    )
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [square(5.0, -45.0, 10.0)], [date(2024, 1, 1)])
    out = _run(
        "--chip", chip_uid(CELL, DAY, 3, 3), "-k", "20", "--label-status", "labeled", "--json"
    )
    assert out.exit_code == 0, out.output
    hits = json.loads(out.output)["hits"]
    assert [h["uid"] for h in hits] == [chip_uid(CELL, DAY, 0, 0)]
