"""Stage 3: the loop. Train a round's model, predict whole cells, validate, backfill labels."""
