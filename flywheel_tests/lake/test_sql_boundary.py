"""Every DuckLake statement lives behind flywheel_core/lake/, with one transaction helper and one
quoting helper; this walks the packages' source with `ast` and fails on the first file that
breaks the rule, naming the file, the line and what to use instead.

What counts:
(a) a call `.execute(...)`, `.executemany(...)` or `.sql(...)` outside flywheel_core/lake/, unless
    the module is in ALLOWED_SQL below (with its reason). Such modules must not open the lake.
(b) a string constant holding a BEGIN / COMMIT / ROLLBACK statement outside lake/transaction.py.
(c) a filter argument (`.where(x)`, `where=x`, `filter=x`) holding an f-string that interpolates
    anything but a call of a quoting helper (QUOTING_CALLS): a raw value in a filter.
(d) anywhere, an f-string that pastes a value between single quotes after SQL (`= '{v}'`,
    `IN ('{v}'`, `LOAD '{v}'`): hand-made quoting, which `quote.string_literal` replaces.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("flywheel_core", "flywheel_assets", "flywheel_resources", "flywheel_cli")
LAKE = "flywheel_core/lake/"
TRANSACTION = "flywheel_core/lake/transaction.py"

# (module, receiver) -> why a statement there is not DuckLake SQL; receiver None: any receiver.
ALLOWED_SQL = {
    ("flywheel_core/embed/qa.py", None): "in-memory DuckDB over the embedding Parquet export",
    ("flywheel_core/embed/vss.py", None): "in-memory DuckDB TEMP tables + HNSW over the export",
}
SQL_METHODS = {"execute", "executemany", "sql"}
LAKE_OPENERS = {"lake_connection", "open_lake"}
# Calls whose result is quoted SQL: flywheel_core.lake.quote and .spatial_filters, and the
# builders made of them (partition_filter, the search clause helpers).
QUOTING_CALLS = {
    "literal",
    "string_literal",
    "identifier",
    "sql_eq",
    "sql_in",
    "sql_range",
    "sql_and",
    "bbox_meets_sql",
    "lon_in_range_sql",
    "partition_filter",
    "sql_str",
    "in_list",
    "and_clauses",
}
FILTER_KEYWORDS = {"where", "filter"}
TRANSACTION_SQL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK)\b|\bBEGIN TRANSACTION\b", re.I)
HAND_QUOTED = re.compile(r"(=|<|>|\bIN\s*\(|,|\bLIKE|\bLOAD|\bIS)\s*'$", re.I)


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)


SOURCES = list(_sources())


def _receiver(call: ast.Call) -> str | None:
    func = call.func
    assert isinstance(func, ast.Attribute)
    value = func.value
    return value.id if isinstance(value, ast.Name) else None


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return func.id
        if isinstance(func, ast.Attribute):
            return func.attr
    return None


def _docstrings(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            out.add(id(first.value))
    return out


def sql_calls_outside_lake(rel: str, tree: ast.Module) -> list[str]:
    """(a): statement calls outside lake/ that no ALLOWED_SQL entry covers."""
    if rel.startswith(LAKE):
        return []
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in SQL_METHODS:
            continue
        receiver = _receiver(node)
        if (rel, None) in ALLOWED_SQL or (rel, receiver) in ALLOWED_SQL:
            continue
        found.append(f"{rel}:{node.lineno}: .{node.func.attr}() outside flywheel_core/lake/")
    return found


def allowed_modules_open_the_lake(rel: str, tree: ast.Module) -> list[str]:
    """The ALLOWED_SQL modules run DuckDB, never DuckLake: they must not open the lake."""
    if not any(rel == module for module, _ in ALLOWED_SQL):
        return []
    return [
        f"{rel}:{node.lineno}: opens the lake but runs SQL outside flywheel_core/lake/"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _call_name(node) in LAKE_OPENERS
    ]


def transaction_statements(rel: str, tree: ast.Module) -> list[str]:
    """(b): BEGIN / COMMIT / ROLLBACK statements outside lake/transaction.py."""
    if rel == TRANSACTION:
        return []
    docs = _docstrings(tree)
    return [
        f"{rel}:{node.lineno}: {node.value!r}: use flywheel_core.lake.transaction.transaction"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docs
        and TRANSACTION_SQL.search(node.value)
    ]


def _filter_args(tree: ast.Module) -> Iterator[ast.AST]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr == "where" and node.args:
            yield node.args[0]
        for kw in node.keywords:
            if kw.arg in FILTER_KEYWORDS:
                yield kw.value


def raw_filters(rel: str, tree: ast.Module) -> list[str]:
    """(c): f-strings in filter arguments that interpolate anything but a quoting call."""
    found = []
    for arg in _filter_args(tree):
        for node in ast.walk(arg):
            if not isinstance(node, ast.JoinedStr):
                continue
            for part in node.values:
                if isinstance(part, ast.FormattedValue) and (
                    _call_name(part.value) not in QUOTING_CALLS
                ):
                    found.append(
                        f"{rel}:{node.lineno}: filter f-string interpolates "
                        f"{ast.unparse(part.value)!r}: build it with flywheel_core.lake.quote"
                    )
    return found


def hand_quoted(rel: str, tree: ast.Module) -> list[str]:
    """(d): f-strings pasting a value between single quotes after SQL."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.JoinedStr):
            continue
        parts = node.values
        for before, value, after in zip(parts, parts[1:], parts[2:], strict=False):
            if (
                isinstance(value, ast.FormattedValue)
                and isinstance(before, ast.Constant)
                and isinstance(after, ast.Constant)
                and HAND_QUOTED.search(str(before.value))
                and str(after.value).startswith("'")
            ):
                found.append(
                    f"{rel}:{node.lineno}: '{{{ast.unparse(value.value)}}}' quoted by hand: "
                    "use flywheel_core.lake.quote"
                )
    return found


CHECKS = [
    sql_calls_outside_lake,
    allowed_modules_open_the_lake,
    transaction_statements,
    raw_filters,
    hand_quoted,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_packages_keep_the_boundary(check):
    found = [line for rel, tree in SOURCES for line in check(rel, tree)]
    assert not found, "\n".join(found)


def test_the_walk_sees_the_packages():
    names = {rel for rel, _ in SOURCES}
    assert TRANSACTION in names and "flywheel_core/lake/quote.py" in names
    assert len(names) > 100
    for module, _ in ALLOWED_SQL:
        assert module in names, f"stale ALLOWED_SQL entry: {module}"


BAD = """
def f(con, db, cell, day, rows):
    con.execute("BEGIN TRANSACTION")
    con.execute("DELETE FROM labels WHERE s2_cell = ?", [cell])
    con.execute("COMMIT")
    db.open_table("t").search().where(f"cell = '{cell}' AND date = '{day}'")
    db.open_table("t").search().where(f"uid IN ({rows})")
    db.open_table("t").count_rows(where=f"date <= {day}")
    ok = db.open_table("t").search().where(f"cell = {string_literal(cell)}")
    return f"LOAD '{cell}'", ok
"""


def test_each_check_catches_what_it_is_for():
    """The checks are not vacuous: a module doing everything wrong trips each of them."""
    tree = ast.parse(BAD)
    rel = "flywheel_core/flywheel/bad.py"
    assert len(sql_calls_outside_lake(rel, tree)) == 3
    assert len(transaction_statements(rel, tree)) == 2
    assert [m.split("interpolates ")[1].split(":")[0] for m in raw_filters(rel, tree)] == [
        "'cell'",
        "'day'",
        "'rows'",
        "'day'",
    ]
    assert len(hand_quoted(rel, tree)) == 3  # cell, day and the LOAD path
    assert sql_calls_outside_lake("flywheel_core/lake/bad.py", tree) == []
    assert allowed_modules_open_the_lake(
        "flywheel_core/embed/qa.py", ast.parse("lake_connection(c)")
    )
