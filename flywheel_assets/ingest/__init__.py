"""Stage 1: labels and imagery for one (cell, date)."""
