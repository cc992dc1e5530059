"""Where models run: device and precision choice, and the process-wide model cache."""

from flywheel_core.compute.device import (
    DeviceUnavailableError,
    ModelCache,
    ModelKey,
    dtype_choice,
    model_cache,
    resolve_device,
    resolve_dtype,
)

__all__ = [
    "DeviceUnavailableError",
    "ModelCache",
    "ModelKey",
    "dtype_choice",
    "model_cache",
    "resolve_device",
    "resolve_dtype",
]
