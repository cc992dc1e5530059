"""Date-line-aware longitude ranges and bbox filters (flywheel_core.lake.spatial_filters).

The SQL filter is checked against shapely on a grid of boxes, many crossing ±180, in DuckDB and
in LanceDB; the callers' filters (search label status, mask prompts, backfill, chips near a
detection) are checked with a box that crosses the date line.
"""

from __future__ import annotations

import itertools
from datetime import date

import duckdb
import lancedb
import pyarrow as pa
import pytest
import shapely

from flywheel_core.embed.search_filters import labeled_uids
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.label_boxes import active_labels_in_box
from flywheel_core.lake.predictions import prediction_row
from flywheel_core.lake.spatial_filters import (
    LABEL_BBOX_COLUMNS,
    bbox_meets_sql,
    box_meets,
    box_of,
    box_shape,
    centroid_lonlat,
    lon_in_range_sql,
    lon_range_of,
    lon_ranges_meet,
    padded_box,
    unwrapped,
)
from flywheel_core.masks.factory import labels_meeting
from flywheel_tests.flywheel.conftest import import_seeds

# A 2 km-wide polygon across the date line, as a raw lon/lat ring (its shapely bounds span 359.98°).
ACROSS = shapely.Polygon([(179.99, -16.0), (-179.99, -16.0), (-179.99, -15.99), (179.99, -15.99)])
EAST_OF_LINE = shapely.box(179.991, -15.999, 179.995, -15.995)  # inside ACROSS, lon > 0 side
WEST_OF_LINE = shapely.box(-179.995, -15.999, -179.991, -15.995)  # inside ACROSS, lon < 0 side
GREENWICH = shapely.box(0.0, -15.999, 0.004, -15.995)  # same latitude, the other side of the Earth


def test_a_polygon_across_the_date_line_has_the_short_range():
    assert ACROSS.bounds[2] - ACROSS.bounds[0] > 359  # what a plain bbox filter would use
    assert lon_range_of(ACROSS) == (179.99, -179.99)
    west, south, east, north = box_of(ACROSS)
    assert (west, east) == (179.99, -179.99) and (south, north) == (-16.0, -15.99)
    lon, lat = centroid_lonlat(ACROSS)
    assert abs(abs(lon) - 180.0) < 1e-9 and lat == pytest.approx(-15.995)
    assert ACROSS.centroid.x == pytest.approx(0.0)  # the plain centroid is in the Atlantic


def test_box_of_many_geometries_takes_the_short_way_round():
    assert box_of([EAST_OF_LINE, WEST_OF_LINE])[0::2] == (179.991, -179.991)
    assert box_of([GREENWICH, EAST_OF_LINE])[0::2] == (0.0, 179.995)  # no crossing needed
    unwrapped_past = shapely.box(179.99, 0.0, 180.01, 1.0)  # a shape "unwrapped" east of 180
    assert lon_range_of(unwrapped_past) == pytest.approx((179.99, -179.99))
    with pytest.raises(ValueError, match="no geometry"):
        lon_range_of([])


def test_lon_ranges_meet_across_the_line():
    assert lon_ranges_meet(179.0, -179.0, 179.5, 179.6)
    assert lon_ranges_meet(179.0, -179.0, -179.5, -179.4)
    assert lon_ranges_meet(179.0, -179.0, 170.0, -170.0)  # both cross: they meet at ±180
    assert not lon_ranges_meet(179.0, -179.0, -10.0, 10.0)
    assert not lon_ranges_meet(-10.0, 10.0, 11.0, 12.0)


def test_padded_box_wraps_and_closes():
    assert padded_box((-179.95, 0, -179.9, 1), 0.1) == pytest.approx((179.95, -0.1, -179.8, 1.1))
    assert padded_box((179.0, 0, -179.0, 1), 0.5)[0::2] == pytest.approx((178.5, -178.5))
    assert padded_box((-170, 0, 170, 1), 20)[0::2] == (-180.0, 180.0)  # the globe
    assert padded_box((0, 89.5, 1, 89.9), 1.0)[3] == 90.0


def _boxes():
    """Boxes (west, south, east, north): plain, crossing ±180, touching it, and the globe."""
    lons = [-180.0, -179.5, -90.0, -1.0, 0.0, 45.0, 179.5, 180.0]
    out = [(w, 0.0, e, 1.0) for w, e in itertools.product(lons, lons)]
    return out + [(w, 2.0, e, 3.0) for w, e in [(10.0, 20.0), (170.0, -170.0)]]


def _truth(stored, query):
    return box_shape(stored).intersects(box_shape(query))


def test_bbox_sql_matches_geometry_in_duckdb():
    boxes = _boxes()
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t (i INT, bbox_xmin DOUBLE, bbox_ymin DOUBLE, "
        "bbox_xmax DOUBLE, bbox_ymax DOUBLE)"
    )
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", [[i, *b] for i, b in enumerate(boxes)])
    crossing_queries = 0
    for query in boxes:
        got = {
            r[0] for r in con.execute(f"SELECT i FROM t WHERE {bbox_meets_sql(query)}").fetchall()
        }
        want = {i for i, b in enumerate(boxes) if _truth(b, query)}
        assert got == want, query
        assert {i for i, b in enumerate(boxes) if box_meets(b, query)} == want, query
        crossing_queries += query[0] > query[2]
    assert crossing_queries > 20  # the grid really exercises the date line


def test_bbox_and_lon_filters_in_lancedb(tmp_path):
    boxes = _boxes()
    db = lancedb.connect(str(tmp_path / "lance"))
    data = {"i": list(range(len(boxes)))}
    data |= {c: [b[k] for b in boxes] for k, c in enumerate(LABEL_BBOX_COLUMNS)}
    data["center_lon"] = [b[0] for b in boxes]
    tbl = db.create_table("boxes", pa.table(data))
    query = (179.0, 0.0, -179.0, 1.0)
    got = set(tbl.search().where(bbox_meets_sql(query)).limit(None).to_arrow()["i"].to_pylist())
    assert got == {i for i, b in enumerate(boxes) if _truth(b, query)}
    near = tbl.search().where(lon_in_range_sql("center_lon", 179.0, -179.0)).limit(None)
    lons = set(near.to_arrow()["center_lon"].to_pylist())
    assert lons == {-180.0, -179.5, 179.5, 180.0}


def test_unwrapped_connects_shapes_across_the_line():
    box = box_of([ACROSS])
    a, e, w, g = unwrapped([ACROSS, EAST_OF_LINE, WEST_OF_LINE, GREENWICH], box)
    assert a.area == pytest.approx(0.02 * 0.01)
    assert a.contains(e) and a.contains(w) and not a.intersects(g)
    assert unwrapped([GREENWICH], (0.0, 0.0, 1.0, 1.0))[0] is GREENWICH  # plain boxes: untouched


def _chips(*footprints):
    return pa.table(
        {
            "uid": [f"chip-{i}" for i in range(len(footprints))],
            "date": ["2024-06-01"] * len(footprints),
            "footprint": [shapely.to_wkb(f) for f in footprints],
        }
    )


def test_label_status_across_the_date_line(lake, tmp_path):
    """A chip across ±180 is labeled by a label just east or west of the line, never by one at
    lon 0 on its latitude (before: the chip's bbox spanned the globe and its raw ring the whole
    latitude band, so the Greenwich label counted and the real ones did not)."""
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [GREENWICH], [date(2024, 1, 1)], "greenwich")
        assert labeled_uids(con, _chips(ACROSS)) == set()
        import_seeds(con, tmp_path, [EAST_OF_LINE], [date(2024, 1, 1)], "east")
        assert labeled_uids(con, _chips(ACROSS, GREENWICH)) == {"chip-0", "chip-1"}
        box = box_of([ACROSS])
        ids = [i for i, _ in active_labels_in_box(con, box)]
        assert len(ids) == 1  # the east label only


def test_mask_prompts_meet_labels_across_the_date_line():
    """Labels whose stored bbox crosses ±180 (xmin > xmax) meet a chip just west of the line."""
    chip = {"footprint": shapely.to_wkb(shapely.box(-179.999, -16.0, -179.98, -15.99))}
    crossing = dict(zip(LABEL_BBOX_COLUMNS, box_of(ACROSS), strict=True))
    far = dict(zip(LABEL_BBOX_COLUMNS, GREENWICH.bounds, strict=True))
    assert labels_meeting(chip, [crossing, far]) == [crossing]


def test_prediction_rows_across_the_date_line():
    """A predicted polygon across ±180 is stored with its centroid on the line and a bbox of the
    2 km it covers (xmin > xmax), not lon 0 and the globe."""
    row = prediction_row(
        shapely.to_wkb(ACROSS),
        model_id="m",
        round_no=1,
        cell="c",
        day=date(2024, 6, 1),
        score=0.9,
        area_m2=1.0,
        h3_resolution=7,
        metrics={},
    )
    assert abs(abs(row["centroid_lon"]) - 180.0) < 1e-9
    assert (row["bbox_xmin"], row["bbox_xmax"]) == (179.99, -179.99)


def _chip_table(db, centres):
    rows = []
    for i, (lon, lat) in enumerate(centres):
        d = 0.0005
        foot = shapely.box(lon - d, lat - d, lon + d, lat + d)
        rows.append(
            {
                "uid": f"chip-{i}",
                "dataset": "vhr_chips",
                "cell": "c",
                "date": "2024-06-01",
                "footprint": shapely.to_wkb(foot),
                "center_lon": lon,
                "center_lat": lat,
                "model_id": "m",
                "trained": True,
                "vector": [1.0, float(i + 1)],
            }
        )
    schema = pa.schema(
        [
            *(pa.field(n, pa.string()) for n in ("uid", "dataset", "cell", "date")),
            pa.field("footprint", pa.binary()),
            pa.field("center_lon", pa.float64()),
            pa.field("center_lat", pa.float64()),
            pa.field("model_id", pa.string()),
            pa.field("trained", pa.bool_()),
            pa.field("vector", pa.list_(pa.float32(), 2)),
        ]
    )
    return db.create_table("emb", pa.Table.from_pylist(rows, schema=schema))


def test_point_query_finds_the_chip_across_the_date_line(tmp_path):
    """A point 55 m west of ±180 has the chip just east of the line 56 m away (before: the centre
    window stopped at -180, so no chip was found, and the gap was measured round the globe)."""
    from flywheel_core.embed.search_queries import point_query

    tbl = _chip_table(lancedb.connect(str(tmp_path / "l")), [(179.9995, 0.0), (0.0, 0.0)])
    q = point_query(tbl, -179.9995, 0.0, max_distance_m=200.0)
    assert q.uid == "chip-0"
    assert q.point_distance_m == pytest.approx(55.66, abs=0.1)  # to the footprint's edge


def test_chips_near_a_detection_across_the_date_line(tmp_path):
    """The backfill's chips for detections either side of ±180 are the chips there, not every
    chip of the date along the latitude."""
    from flywheel_core.flywheel.partition import chips_near

    db = lancedb.connect(str(tmp_path / "l"))
    _chip_table(db, [(179.9995, -15.995), (-179.9995, -15.995), (0.0, -15.995)])
    box = box_of([EAST_OF_LINE, WEST_OF_LINE])
    got = chips_near(db, date(2024, 6, 1), box, table="emb")
    assert sorted(r["uid"] for r in got) == ["chip-0", "chip-1"]
