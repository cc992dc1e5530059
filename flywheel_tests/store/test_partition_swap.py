"""The fragment-swap partition write: one version per replace, other partitions byte-identical
(rows and the very fragment files that hold them), locally and on S3 (moto)."""

from __future__ import annotations

import lance
import numpy as np
import pyarrow as pa
import pytest

from flywheel_core.store import lance_tables as lt

CELL = "479e758c4"
DAYS = ("2024-05-01", "2024-06-01", "2024-07-01")
SCHEMA = pa.schema(
    [("uid", pa.string()), ("cell", pa.string()), ("date", pa.string()), lt.pixels_field("image")]
)


def _chips(day: str, n: int, seed: int) -> pa.Table:
    """`n` rows of random pixels; a new seed changes every byte of every row."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "uid": [f"{CELL}-{day}-{i:03d}" for i in range(n)],
            "cell": [CELL] * n,
            "date": [day] * n,
            "image": [rng.integers(0, 255, 2048, dtype=np.uint8).tobytes() for _ in range(n)],
        },
        schema=SCHEMA,
    )


def _part(day: str) -> dict[str, str]:
    return {"cell": CELL, "date": day}


def _rows(db, day: str) -> pa.Table:
    return lt.read_partitions(db, "chips", [_part(day)]).sort_by("uid").select(SCHEMA.names)


def _fragments_of(db, day: str) -> list[str]:
    """The fragments (data files + deletion file) that hold `day`'s rows, as text."""
    dataset = db.open_table("chips").to_lance()
    rows = dataset.to_table(
        columns=["uid"], filter=lt.partition_filter(_part(day)), with_row_address=True
    )
    ids = sorted({int(a) >> 32 for a in rows.column("_rowaddr").to_pylist()})
    return [repr(dataset.get_fragment(i).metadata) for i in ids]


def _filled(db) -> None:
    for seed, day in enumerate(DAYS):
        lt.replace_partition(db, "chips", _chips(day, 20 + seed, seed), _part(day))


def _check_replace_touches_one_partition(db) -> None:
    _filled(db)
    others = [d for d in DAYS if d != DAYS[1]]
    before = {d: (_rows(db, d), _fragments_of(db, d)) for d in others}
    version = db.open_table("chips").version
    for seed, n in ((10, 35), (11, 7), (11, 7)):  # grow, shrink, the same again (idempotent)
        new = _chips(DAYS[1], n, seed)
        result = lt.replace_partition(db, "chips", new, _part(DAYS[1]))
        version += 1
        assert result.version == version, "a replace must be exactly one new table version"
        assert lt.connect(db.uri).open_table("chips").version == version
        assert _rows(db, DAYS[1]).equals(new.sort_by("uid"))
        for day, (rows, fragments) in before.items():
            assert _rows(db, day).equals(rows), f"{day}'s rows changed"
            assert _fragments_of(db, day) == fragments, f"{day}'s fragments were rewritten"
    assert db.open_table("chips").count_rows() == 20 + 7 + 22


def test_replace_touches_only_its_partition_in_one_version(tmp_path):
    _check_replace_touches_one_partition(lt.connect(str(tmp_path / "lancedb")))


def test_replace_touches_only_its_partition_on_s3(s3_server, s3_env):
    _check_replace_touches_one_partition(lt.connect(s3_env.rstrip("/") + "/lancedb"))
    assert any(".lance" in k for k in s3_server.keys(s3_env.split("/", 3)[3]))


def test_counts_say_what_changed(tmp_path):
    db = lt.connect(str(tmp_path / "lancedb"))
    lt.replace_partition(db, "chips", _chips(DAYS[0], 5, 0), _part(DAYS[0]))
    result = lt.replace_partition(db, "chips", _chips(DAYS[0], 8, 1).slice(2), _part(DAYS[0]))
    assert (result.rows, result.inserted, result.updated, result.deleted) == (6, 3, 3, 2)


def test_unpartitioned_table_is_replaced_whole(tmp_path):
    db = lt.connect(str(tmp_path / "lancedb"))
    lt.replace_partition(db, "chips", _chips(DAYS[0], 5, 0), {})
    version = db.open_table("chips").version
    new = _chips(DAYS[1], 3, 1)
    result = lt.replace_partition(db, "chips", new, {})
    assert result.version == version + 1 and result.deleted == 5 and result.inserted == 3
    assert db.open_table("chips").to_arrow().sort_by("uid").equals(new.sort_by("uid"))


def test_a_writer_of_another_partition_in_between_is_kept(tmp_path):
    """A commit prepared on an older version is rebased over another partition's write."""
    db = lt.connect(str(tmp_path / "lancedb"))
    _filled(db)
    stale = db.open_table("chips").to_lance()
    lt.replace_partition(db, "chips", _chips(DAYS[0], 4, 9), _part(DAYS[0]))
    new = _chips(DAYS[1], 6, 12)
    fragments = lance.fragment.write_fragments(new.to_reader(), stale)
    committed, old = lt._commit_swap(stale, fragments, _part(DAYS[1]))
    assert len(old) == 21
    assert _rows(db, DAYS[0]).equals(_chips(DAYS[0], 4, 9).sort_by("uid"))
    assert _rows(db, DAYS[1]).equals(new.sort_by("uid"))
    assert committed.count_rows() == 4 + 6 + 22


def test_a_writer_of_the_same_partition_in_between_is_replaced(tmp_path):
    """The other writer's deletion file conflicts with ours: the swap is redone on its version."""
    db = lt.connect(str(tmp_path / "lancedb"))
    _filled(db)
    stale = db.open_table("chips").to_lance()
    lt.replace_partition(db, "chips", _chips(DAYS[1], 9, 30), _part(DAYS[1]))
    new = _chips(DAYS[1], 6, 31)
    fragments = lance.fragment.write_fragments(new.to_reader(), stale)
    committed, old = lt._commit_swap(stale, fragments, _part(DAYS[1]))
    assert len(old) == 9, "the retry must delete the rows the other writer committed"
    assert committed.version == stale.version + 2
    assert _rows(db, DAYS[1]).equals(new.sort_by("uid"))
    assert committed.count_rows() == 20 + 6 + 22


@pytest.mark.parametrize("bad", ["missing", "extra"])
def test_a_different_schema_is_refused_and_nothing_changes(tmp_path, bad):
    db = lt.connect(str(tmp_path / "lancedb"))
    _filled(db)
    version = db.open_table("chips").version
    rows = _chips(DAYS[1], 3, 5)
    rows = (
        rows.drop_columns(["image"])
        if bad == "missing"
        else rows.append_column("x", pa.array([1, 2, 3]))
    )
    with pytest.raises(lt.PartitionMismatchError, match=bad if bad == "missing" else "unknown"):
        lt.replace_partition(db, "chips", rows, _part(DAYS[1]))
    assert db.open_table("chips").version == version
    assert _rows(db, DAYS[1]).num_rows == 21
