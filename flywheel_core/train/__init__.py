"""Training data and training: samples in Lance, data module, model, metrics."""
