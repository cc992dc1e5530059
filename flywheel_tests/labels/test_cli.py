"""`flywheel labels import` / `stats` through click, against a lake under tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flywheel_cli.labels import labels
from flywheel_tests.labels.samples import sample_file


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("FLYWHEEL_LAKE_CATALOG", "FLYWHEEL_LAKE_DATA_PATH", "FLYWHEEL_S2_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_import_prints_counts_snapshot_and_cells(data_dir: Path, tmp_path: Path) -> None:
    path = sample_file(tmp_path, "berlin_roofs.geojson")
    runner = CliRunner()
    first = runner.invoke(labels, ["import", str(path), "--doi", "10.1/xyz"])
    assert first.exit_code == 0, first.output
    assert "read 4, inserted 4, duplicates 0, rejected 0" in first.output
    assert "DuckLake snapshot" in first.output
    assert "S2 level-15 cell(s)" in first.output
    assert (data_dir / "lake" / "catalog.ducklake").is_file()

    again = runner.invoke(labels, ["import", str(path), "--force"])
    assert again.exit_code == 0, again.output
    assert "read 4, inserted 0, duplicates 4, rejected 0" in again.output
    assert "cover 0 S2" in again.output

    stats = runner.invoke(labels, ["stats"])
    assert stats.exit_code == 0, stats.output
    row = next(line for line in stats.output.splitlines() if line.startswith("berlin_roofs"))
    assert row.split() == ["berlin_roofs", "4", "0", "4"]


def test_rejects_are_listed(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "mixed.geojson"
    features = [
        {"type": "Point", "coordinates": [13.4, 52.5]},
        {"type": "LineString", "coordinates": [[13.4, 52.5], [13.5, 52.6]]},
    ]
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {}, "geometry": g} for g in features
                ],
            }
        )
    )
    result = CliRunner().invoke(labels, ["import", str(path), "--source", "mix"])
    assert result.exit_code == 0, result.output
    assert "read 2, inserted 1, duplicates 0, rejected 1" in result.output
    assert "rejected row 1: LineString is a line" in result.output


@pytest.mark.parametrize("content", [None, "not json at all"])
def test_bad_files_are_clean_click_errors(data_dir: Path, tmp_path: Path, content) -> None:
    path = tmp_path / "labels.geojson"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(labels, ["import", str(path)])
    assert result.exit_code != 0
    assert "Error" in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    if content is None:
        assert "does not exist" in result.output
    else:
        assert "labels.geojson" in result.output


def test_stats_on_an_empty_lake(data_dir: Path) -> None:
    result = CliRunner().invoke(labels, ["stats"])
    assert result.exit_code == 0, result.output
    assert "no labels yet" in result.output


def test_same_file_under_another_source_is_a_no_op_that_names_the_first_import(
    data_dir: Path, tmp_path: Path
) -> None:
    path = sample_file(tmp_path, "berlin_roofs.geojson")
    runner = CliRunner()
    first = runner.invoke(labels, ["import", str(path)])
    assert first.exit_code == 0, first.output
    import_id = first.output.split("(import ")[1].split(")")[0]
    copy = tmp_path / "renamed_copy.geojson"
    copy.write_bytes(path.read_bytes())  # same bytes, other name, other source
    again = runner.invoke(labels, ["import", str(copy), "--source", "other-dataset"])
    assert again.exit_code == 0, again.output
    lines = again.output.strip().splitlines()
    assert len(lines) == 1, again.output  # one clear line
    assert "already imported (same SHA-256)" in lines[0]
    assert import_id in lines[0] and "berlin_roofs.geojson" in lines[0]
    assert "'berlin_roofs'" in lines[0] and "--force" in lines[0]
    stats = runner.invoke(labels, ["stats"])
    assert "other-dataset" not in stats.output
    forced = runner.invoke(labels, ["import", str(copy), "--source", "other-dataset", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "inserted 4, duplicates 0" in forced.output  # forced: a new source's labels
    stats = runner.invoke(labels, ["stats"])
    row = next(line for line in stats.output.splitlines() if line.startswith("other-dataset"))
    assert row.split() == ["other-dataset", "4", "0", "4"]
