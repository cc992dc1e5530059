from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import geopandas as gpd
import pyarrow as pa
import pytest
import shapely
from shapely.geometry import Point

from flywheel_core.geo.projection import reproject
from flywheel_core.geo.s2 import InvalidCellError, cell_from_lonlat, cell_polygon, parent_token
from flywheel_core.labels.importer import read_label_file
from flywheel_core.labels.ingest import import_label_file
from flywheel_core.lake import labels as store
from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.labels import (
    current_snapshot_id,
    insert_labels,
    label_counts,
    labels_for_cell,
)
from flywheel_tests.labels.samples import H3_RES, LAT, LON, S2_LEVEL, offset, rect, sample_file


def _count(con, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_import_is_one_transaction(
    lake: LakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sample_file(tmp_path)
    calls = []

    def fail_after_labels_insert(con, record) -> None:
        calls.append(_count(con, "labels"))  # the labels are in, inside the transaction
        raise RuntimeError("disk full (simulated)")

    with lake_connection(lake) as con:
        before = current_snapshot_id(con)
        monkeypatch.setattr(store, "_write_import_record", fail_after_labels_insert)
        with pytest.raises(RuntimeError, match="simulated"):
            import_label_file(con, path, s2_level=S2_LEVEL, h3_resolution=H3_RES)
        assert calls == [4]
        assert _count(con, "labels") == 0
        assert _count(con, "label_imports") == 0
        assert current_snapshot_id(con) == before
        monkeypatch.undo()
        _, result = import_label_file(con, path, s2_level=S2_LEVEL, h3_resolution=H3_RES)
        assert result.n_inserted == 4  # the connection is fine after the rollback
    with lake_connection(lake) as con:
        assert (_count(con, "labels"), _count(con, "label_imports")) == (4, 1)


def test_import_record_and_batch_duplicates(lake: LakeConfig, tmp_path: Path) -> None:
    batch = read_label_file(sample_file(tmp_path), s2_level=S2_LEVEL, h3_resolution=H3_RES)
    twice = pa.concat_tables([batch.table, batch.table.slice(0, 2)])
    with lake_connection(lake) as con:
        result = insert_labels(
            con,
            twice,
            {"file_name": "x.geojson", "source": "rooftops", "n_read": 6, "n_rejected": 1,
             "rejects": [{"row": 5, "reason": "empty geometry"}]},
        )  # fmt: skip
        assert (result.n_read, result.n_inserted, result.n_duplicate) == (6, 4, 2)
        row = con.execute(
            "SELECT import_id, n_inserted, n_duplicate, n_rejected, rejects FROM label_imports"
        ).fetchone()
        assert row[0] == result.import_id and row[1:4] == (4, 2, 1)
        assert json.loads(row[4]) == [{"row": 5, "reason": "empty geometry"}]
        ids = con.execute("SELECT DISTINCT import_id FROM labels").fetchall()
        assert ids == [(result.import_id,)]
        assert (
            con.execute("SELECT count(*) FROM labels WHERE created_at IS NULL").fetchone()[0] == 0
        )


def _point_just_outside(token: str, metres: float) -> Point:
    """A point about `metres` outside the middle of the cell's first edge."""
    cell = cell_polygon(token)
    (x0, y0), (x1, y1) = cell.exterior.coords[0], cell.exterior.coords[1]
    mid = ((x0 + x1) / 2, (y0 + y1) / 2)
    local = f"+proj=laea +lat_0={mid[1]} +lon_0={mid[0]} +datum=WGS84 +units=m"
    cell_m = reproject(cell, 4326, local)
    cx, cy = cell_m.centroid.coords[0]
    norm = math.hypot(cx, cy)
    t = metres
    while shapely.distance(Point(-cx / norm * t, -cy / norm * t), cell_m) < metres:
        t += 0.25
    return reproject(Point(-cx / norm * t, -cy / norm * t), local, 4326)


def test_labels_for_cell_uses_the_footprint_dates_and_status(
    lake: LakeConfig, tmp_path: Path
) -> None:
    token = cell_from_lonlat(LON, LAT, S2_LEVEL)
    inside = rect(*offset(*cell_polygon(token).centroid.coords[0], 0, 0), 10, 10)
    near = _point_just_outside(token, 3.0)  # outside, but a 5 m prompt reaches in
    far = _point_just_outside(token, 12.0)  # its 5 m prompt does not
    assert cell_from_lonlat(near.x, near.y, S2_LEVEL) != token
    frame = gpd.GeoDataFrame(
        {"id": [1, 2, 3, 4, 5], "year": [2019, 2019, 2019, 2030, None]},
        geometry=[inside, near, far, rect(*inside.exterior.coords[2], 5, 5), inside.buffer(1e-6)],
        crs=4326,
    )
    path = tmp_path / "cell.geojson"
    frame.to_file(path)
    with lake_connection(lake) as con:
        batch, _ = import_label_file(con, path, s2_level=S2_LEVEL, h3_resolution=H3_RES)
        ids = dict(
            zip(
                batch.table["source_id"].to_pylist(),
                batch.table["label_id"].to_pylist(),
                strict=True,
            )
        )

        def found(cell: str, as_of: date) -> set[str]:
            got = labels_for_cell(con, cell, as_of)["label_id"].to_pylist()
            return {k for k, v in ids.items() if v in got}

        assert found(token, date(2025, 6, 1)) == {"1", "2", "5"}  # 4 not installed yet
        assert found(token, date(2030, 1, 1)) == {"1", "2", "4", "5"}
        assert found(token, date(2018, 1, 1)) == {"5"}  # undated labels always count
        # Any level: the parent contains them all, a child only the label it meets.
        assert found(parent_token(token, S2_LEVEL - 2), date(2031, 1, 1)) >= {"1", "2", "4", "5"}
        child = cell_from_lonlat(*inside.centroid.coords[0], S2_LEVEL + 3)
        assert "1" in found(child, date(2031, 1, 1))
        assert "3" not in found(child, date(2031, 1, 1))
        # The covering stored with the near point includes the cell its prompt reaches.
        near_cells = con.execute(
            "SELECT s2_cell, s2_cells FROM labels WHERE source_id = '2'"
        ).fetchone()
        assert near_cells[0] != token and token in near_cells[1]

        con.execute("UPDATE labels SET status = 'retracted' WHERE source_id = '1'")
        assert found(token, date(2025, 6, 1)) == {"2", "5"}
        assert label_counts(con) == {"cell": {"active": 4, "retracted": 1}}
        with pytest.raises(InvalidCellError):
            labels_for_cell(con, "not-a-token", date(2025, 1, 1))


def test_batches_with_unknown_kinds_or_missing_columns_are_refused(
    lake: LakeConfig, tmp_path: Path
) -> None:
    table = read_label_file(sample_file(tmp_path), s2_level=S2_LEVEL, h3_resolution=H3_RES).table
    bad_status = table.set_column(
        table.schema.get_field_index("status"), "status", pa.array(["deleted"] * table.num_rows)
    )
    with lake_connection(lake) as con:
        with pytest.raises(ValueError, match="status"):
            insert_labels(con, bad_status, {})
        with pytest.raises(ValueError, match="lacks columns: s2_cells"):
            insert_labels(con, table.drop_columns(["s2_cells"]), {})
        assert _count(con, "labels") == 0 and _count(con, "label_imports") == 0
