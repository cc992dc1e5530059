"""The `flywheel` command line: thin wrappers over flywheel_core and the Dagster instance."""
