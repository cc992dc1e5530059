"""Dagster asset definitions, by flywheel stage. Assets stay thin: the logic is in flywheel_core."""
