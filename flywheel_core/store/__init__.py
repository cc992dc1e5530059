"""Operational ML storage: LanceDB tables keyed by (cell, date) partitions."""
