from __future__ import annotations

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance

from flywheel_assets.partitions import S2_CELLS_NAME
from flywheel_cli.main import cli
from flywheel_core.geo.s2 import cell_from_lonlat


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    return tmp_path / "dagster_home"


def test_add_registers_cells_in_the_instance(home):
    runner = CliRunner()
    result = runner.invoke(cli, ["cells", "add", "11.58", "48.14", "-122.4194", "37.7749"])
    assert result.exit_code == 0, result.output
    expected = {cell_from_lonlat(11.58, 48.14, 15), cell_from_lonlat(-122.4194, 37.7749, 15)}
    instance = DagsterInstance.get()
    assert set(instance.get_dynamic_partitions(S2_CELLS_NAME)) == expected
    again = runner.invoke(cli, ["cells", "add", "11.58", "48.14"])
    assert "already registered" in again.output
    assert len(instance.get_dynamic_partitions(S2_CELLS_NAME)) == 2
    listed = runner.invoke(cli, ["cells", "list"])
    assert set(listed.output.split()) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", "xyz"], "not an S2 cell token"),
        (["--token", "479e75"], "level 15"),
        (["11.58"], "LON LAT pairs"),
        (["11.58", "north"], "must be numbers"),
        (["48.14", "148.0"], "swap"),
        ([], "nothing to add"),
    ],
)
def test_bad_input_is_a_clear_error(home, args, message):
    result = CliRunner().invoke(cli, ["cells", "add", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_from_labels_adds_every_covered_cell(home, tmp_path, monkeypatch):
    import geopandas as gpd
    from shapely.geometry import box

    from flywheel_core.geo.s2 import cell_polygon, covering

    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FLYWHEEL_LAKE_CATALOG", raising=False)
    monkeypatch.delenv("FLYWHEEL_LAKE_DATA_PATH", raising=False)
    edge = cell_polygon(cell_from_lonlat(11.58, 48.14, 15)).exterior.coords
    mx, my = (edge[0][0] + edge[1][0]) / 2, (edge[0][1] + edge[1][1]) / 2
    straddling = box(mx - 0.0002, my - 0.0002, mx + 0.0002, my + 0.0002)
    path = tmp_path / "labels.geojson"
    gpd.GeoDataFrame({"id": ["a"]}, geometry=[straddling], crs=4326).to_file(path)
    runner = CliRunner()
    imported = runner.invoke(cli, ["labels", "import", str(path)])
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(cli, ["cells", "add", "--from-labels"])
    assert result.exit_code == 0, result.output
    registered = set(DagsterInstance.get().get_dynamic_partitions(S2_CELLS_NAME))
    assert registered == set(covering(straddling, 15))
    assert len(registered) >= 2
