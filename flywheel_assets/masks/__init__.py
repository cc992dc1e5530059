"""Stage 2: prompt-driven masks and the training data built from them."""
