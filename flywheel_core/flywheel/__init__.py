"""Closing the loop: validate predictions, decide which become labels, write them back.

- `matching` / `metrics`: object- and area-level agreement of two polygon sets;
- `acceptance`: the rules a detection must pass to become a label;
- `backfill`: accepted detections -> `labels`, every decision -> `backfill_log`, one transaction;
- `changes`: which (cell, date) partitions new or changed labels touch (for the label sensor).
"""
