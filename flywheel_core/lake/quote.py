"""One quoting helper for every SQL string and LanceDB filter built from values.

DuckDB statements take values as `?` parameters wherever DuckDB allows them; these helpers are
for the places it does not (ATTACH options, DDL, LanceDB `where` filters, which are DataFusion SQL
strings with no parameters). A value is rendered as a literal of its type, never pasted raw:
strings are single-quoted with quotes doubled, dates and timestamps become quoted ISO strings,
numbers must be finite, and identifiers are double-quoted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

__all__ = [
    "identifier",
    "literal",
    "sql_and",
    "sql_eq",
    "sql_in",
    "sql_range",
    "string_literal",
]


def string_literal(value: str) -> str:
    """`value` as a single-quoted SQL string literal."""
    if "\x00" in value:
        raise ValueError("a SQL string literal cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


def literal(value: Any) -> str:
    """`value` as a SQL literal of its type: string, date, timestamp, bool, int or float."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a SQL number must be finite, got {value!r}")
        return repr(float(value))
    if isinstance(value, datetime):
        return string_literal(value.isoformat(sep=" "))
    if isinstance(value, date):
        return string_literal(value.isoformat())
    if isinstance(value, str):
        return string_literal(value)
    # numpy scalars and the like: ints and floats by value, anything else refused.
    for kind in (int, float):
        try:
            cast = kind(value)
        except (TypeError, ValueError):
            continue
        if cast == value:
            return literal(cast)
    raise TypeError(f"no SQL literal for a {type(value).__name__}: {value!r}")


def identifier(name: str) -> str:
    """`name` as a double-quoted SQL identifier."""
    if not name or "\x00" in name:
        raise ValueError(f"not a SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def sql_eq(column: str, value: Any) -> str:
    """`column = value`; the column is a name from code, the value is quoted."""
    return f"{column} = {literal(value)}"


def sql_in(column: str, values: Iterable[Any]) -> str:
    """`column IN (...)`; FALSE for no values (an empty IN list is not SQL)."""
    items = [literal(v) for v in values]
    if not items:
        return "FALSE"
    return f"{column} IN ({', '.join(items)})"


def sql_range(column: str, low: Any = None, high: Any = None) -> str:
    """`column >= low AND column <= high`, either bound optional; TRUE when both are None."""
    parts = []
    if low is not None:
        parts.append(f"{column} >= {literal(low)}")
    if high is not None:
        parts.append(f"{column} <= {literal(high)}")
    return " AND ".join(parts) if parts else "TRUE"


def sql_and(*clauses: str | Mapping[str, Any] | None) -> str:
    """AND of clauses; a mapping is a set of `column = value` equalities, sorted by column."""
    parts: list[str] = []
    for clause in clauses:
        if clause is None:
            continue
        if isinstance(clause, Mapping):
            parts.extend(sql_eq(c, v) for c, v in sorted(clause.items()))
        elif clause:
            parts.append(clause)
    if not parts:
        return "TRUE"
    return " AND ".join(f"({p})" if " OR " in p.upper() else p for p in parts)
