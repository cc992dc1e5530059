"""Dagster resources: thin, config-only wrappers over flywheel_core (secrets come from the env)."""
