"""Where models run, as a Dagster resource.

GPU-bound assets declare the Dagster concurrency pool "gpu" (`@asset(pool="gpu")`); the pool's
limit comes from dagster.yaml (`concurrency.pools.default_limit: 1`), so only one model uses the
device at a time however many runs are in flight. Within a process, `GPUResource.load` goes
through the shared `ModelCache`, so a run loads each model once whatever number of partitions or
assets use it.

The device request is resolved when a model is loaded, not when the code location loads: a
machine without a GPU can still serve the UI with `device: cuda` configured, and the run that
needs the GPU fails with a clear message. Only 'auto' falls back to the CPU, and it says so once
in the log and in every `describe()`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dagster import ConfigurableResource
from pydantic import Field

from flywheel_core.compute.device import (
    ModelKey,
    dtype_choice,
    model_cache,
    resolve_device,
)
from flywheel_core.settings import Settings

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

logger = logging.getLogger(__name__)

_fallback_logged: set[str] = set()
_fallback_lock = threading.Lock()


def _log_cpu_fallback_once(requested: str, reason: str) -> None:
    with _fallback_lock:
        if requested in _fallback_logged:
            return
        _fallback_logged.add(requested)
    logger.warning("GPU resource: device %r resolved to the CPU (%s)", requested, reason)


class GPUResource(ConfigurableResource):
    """Device, precision and batch size for model inference, plus where local weights live."""

    device: str = Field(
        default="auto",
        description="'auto' (CUDA, then MPS, then CPU), 'cuda', 'cuda:N', 'mps' or 'cpu'.",
    )
    precision: str = Field(
        default="fp32", description="'fp32', 'fp16' or 'bf16' (fp16 on the CPU runs as fp32)."
    )
    batch_size: int = Field(default=8, description="Chips per forward pass.")
    model_dir: str = Field(
        default_factory=lambda: str(Settings.from_env().data_dir / "models"),
        description="Local folder holding model weights (nothing is downloaded at run time).",
    )

    def _resolved(self) -> tuple[torch.device, str]:
        dev, reason = resolve_device(self.device)
        if dev.type == "cpu" and self.device.strip().lower() != "cpu":
            _log_cpu_fallback_once(self.device, reason)
        return dev, reason

    def torch_device(self) -> torch.device:
        """The resolved torch device (raises if a requested accelerator is missing)."""
        return self._resolved()[0]

    def torch_dtype(self) -> torch.dtype:
        """The torch dtype for `precision` on the resolved device."""
        return dtype_choice(self.precision, self.torch_device())[0]

    def model_path(self, name: str | Path) -> Path:
        """`name` itself when it is absolute or exists, else `model_dir / name`."""
        path = Path(name)
        if path.is_absolute() or path.exists():
            return path
        return Path(self.model_dir) / path

    def describe(self) -> dict[str, str | int]:
        """Run metadata: what was asked for, what was used and why."""
        dev, device_reason = self._resolved()
        dtype, dtype_reason = dtype_choice(self.precision, dev)
        return {
            "device_requested": self.device,
            "device": str(dev),
            "device_reason": device_reason,
            "precision_requested": self.precision,
            "dtype": str(dtype).removeprefix("torch."),
            "dtype_reason": dtype_reason,
            "batch_size": self.batch_size,
            "model_dir": self.model_dir,
        }

    def load(
        self,
        name: str,
        model_id: str,
        loader: Callable[[torch.device, torch.dtype], T],
    ) -> T:
        """The model for (name, model_id) on this device and dtype, loaded once per process.

        `loader(device, dtype)` builds it on a cache miss.
        """
        dev = self.torch_device()
        dtype = dtype_choice(self.precision, dev)[0]
        key = ModelKey(name, str(model_id), str(dev), str(dtype))
        return model_cache().get_or_load(key, lambda: loader(dev, dtype))
