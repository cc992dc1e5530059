"""Stage: DINOv3 embeddings of the chips, with their export, QA and ANN index."""
