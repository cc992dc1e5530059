"""Where the lake's catalog and data files live, parsed once and safe to print.

The catalog string may be a PostgreSQL connection string, so everything that could reach a log
line or an error goes through `describe()`, which keeps only non-secret keys. Passwords are never
accepted here at all: they come from `PGPASSWORD` at connect time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from flywheel_core.errors import FlywheelError

if TYPE_CHECKING:
    from flywheel_core.settings import Settings

CatalogKind = Literal["duckdb", "sqlite", "postgres"]

_KINDS: tuple[CatalogKind, ...] = ("duckdb", "sqlite", "postgres")
# libpq keys that identify a database without revealing anything secret.
_SAFE_PG_KEYS = ("dbname", "host", "port")
_SECRET_PG_KEYS = re.compile(r"(?:^|\s)(password|passfile|sslpassword|sslkey)\s*=", re.IGNORECASE)
_PG_URI = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LakeConfigError(FlywheelError, ValueError):
    """A catalog or data path that cannot be used; the message never contains secrets."""


@dataclass(frozen=True)
class LakeConfig:
    """Catalog (`duckdb:`, `sqlite:` or `postgres:` + libpq key=value) plus data path."""

    catalog: str = "duckdb:data/lake/catalog.ducklake"
    data_path: str = "data/lake/files"
    alias: str = "lake"
    # 0 turns DuckLake data inlining off, so every write lands as a Parquet file (also on S3).
    inline_row_limit: int = 0

    def __post_init__(self) -> None:
        kind, _, target = self.catalog.partition(":")
        if kind not in _KINDS or not target.strip():
            raise LakeConfigError(
                "the lake catalog must look like 'duckdb:<path>', 'sqlite:<path>' or "
                f"'postgres:dbname=... host=... port=... user=...' (got a {kind or 'blank'!r} "
                "catalog)"
            )
        if kind == "postgres" and (_SECRET_PG_KEYS.search(target) or _PG_URI.match(target)):
            raise LakeConfigError(
                "the postgres lake catalog must be libpq key=value pairs without a password "
                "(set PGPASSWORD in the environment instead)"
            )
        if not self.data_path.strip():
            raise LakeConfigError("the lake data path is empty")
        if not _ALIAS.match(self.alias):
            raise LakeConfigError(f"lake alias {self.alias!r} is not a plain SQL identifier")
        if self.inline_row_limit < 0:
            raise LakeConfigError("inline_row_limit must be >= 0")

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeConfig:
        """The lake the environment names (FLYWHEEL_LAKE_CATALOG / FLYWHEEL_LAKE_DATA_PATH)."""
        return cls(catalog=settings.lake_catalog, data_path=settings.lake_data_path)

    @property
    def kind(self) -> CatalogKind:
        return self.catalog.partition(":")[0]  # type: ignore[return-value]

    @property
    def target(self) -> str:
        """The catalog without its kind prefix: a file path or a libpq string."""
        return self.catalog.partition(":")[2].strip()

    @property
    def data_on_s3(self) -> bool:
        return self.data_path.startswith("s3://")

    def resolved_data_path(self) -> str:
        """Data path as stored in the catalog: absolute for local folders, with a trailing '/'.

        DuckLake records the data path when the catalog is created and refuses a different one
        later, so a relative path would break as soon as a process starts elsewhere.
        """
        if self.data_on_s3 or "://" in self.data_path:
            path = self.data_path
        else:
            path = str(Path(self.data_path).expanduser().resolve())
        return path if path.endswith("/") else path + "/"

    def resolved_catalog_path(self) -> Path | None:
        """Local catalog file, or None for a PostgreSQL catalog."""
        if self.kind == "postgres":
            return None
        return Path(self.target).expanduser().resolve()

    def postgres_params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        for part in self.target.split():
            key, sep, value = part.partition("=")
            if sep:
                params[key.strip().lower()] = value.strip().strip("'")
        return params

    def describe(self) -> str:
        """Redacted, loggable description: catalog kind and path or database, and data path."""
        if self.kind == "postgres":
            params = self.postgres_params()
            where = " ".join(f"{k}={params[k]}" for k in _SAFE_PG_KEYS if k in params)
        else:
            where = self.target
        return f"{self.kind} catalog {where or '?'} (data {self.data_path})"

    def __repr__(self) -> str:
        return f"LakeConfig({self.describe()}, alias={self.alias!r})"

    __str__ = __repr__
