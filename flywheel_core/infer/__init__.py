"""Scene-scale inference: tiled prediction into a probability COG, and its vectorization."""

from flywheel_core.infer.tiled import TiledResult, predict_raster, torch_predictor
from flywheel_core.infer.vectorize import Detection, vectorize_probabilities

__all__ = [
    "Detection",
    "TiledResult",
    "predict_raster",
    "torch_predictor",
    "vectorize_probabilities",
]
