"""Shared fixtures; service fixtures (PostgreSQL, S3) live in their own plugin modules."""

from __future__ import annotations

pytest_plugins = [
    "flywheel_tests.fixtures.postgres",
    "flywheel_tests.fixtures.rasters",
    "flywheel_tests.fixtures.s3",
    "flywheel_tests.fixtures.world",
]
