"""Device and precision choice, and a process-wide cache of loaded models.

`resolve_device` turns the configured request ('auto', 'cuda', 'cuda:N', 'mps', 'cpu') into a
torch device plus a sentence saying why, so every run records where its masks were computed.
Asking for an accelerator the machine does not have is an error, never a silent CPU run; only
'auto' falls back to the CPU.

torch is imported lazily: importing this module (and so the Dagster code location) stays cheap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from flywheel_core.errors import FlywheelError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
PRECISION_CHOICES = ("fp32", "fp16", "bf16")


class DeviceUnavailableError(FlywheelError, RuntimeError):
    """The configured device does not exist on this machine."""


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(requested: str) -> tuple[torch.device, str]:
    """The torch device for `requested` and a sentence explaining the choice.

    'auto' picks CUDA, then Apple MPS, then the CPU. 'cuda' (or 'cuda:N') and 'mps' must exist:
    asking for them on a machine without them raises `DeviceUnavailableError`.
    """
    import torch

    req = (requested or "auto").strip().lower()
    if req == "auto":
        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0)
            return torch.device("cuda", 0), f"auto: CUDA is available, running on cuda:0 ({name})"
        if _mps_available():
            return torch.device("mps"), "auto: no CUDA device, Apple MPS is available"
        return torch.device("cpu"), "auto: no CUDA or MPS device: running on the CPU"
    if req == "cpu":
        return torch.device("cpu"), "cpu requested"
    if req == "cuda" or req.startswith("cuda:"):
        if not torch.cuda.is_available():
            cuda_build = torch.version.cuda or "none"
            raise DeviceUnavailableError(
                f"device {requested!r} was requested but CUDA is not available on this machine "
                f"(torch {torch.__version__}, CUDA build {cuda_build}, "
                f"{torch.cuda.device_count()} GPUs visible); set the device to 'auto' or 'cpu'"
            )
        index = 0 if req == "cuda" else _device_index(req)
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceUnavailableError(
                f"device {requested!r} was requested but only {count} CUDA device(s) are visible"
            )
        name = torch.cuda.get_device_name(index)
        return torch.device("cuda", index), f"cuda requested: running on cuda:{index} ({name})"
    if req == "mps":
        if not _mps_available():
            raise DeviceUnavailableError(
                "device 'mps' was requested but Apple MPS is not available on this machine; "
                "set the device to 'auto' or 'cpu'"
            )
        return torch.device("mps"), "mps requested"
    raise ValueError(f"unknown device {requested!r}: expected one of {', '.join(DEVICE_CHOICES)}")


def _device_index(req: str) -> int:
    try:
        index = int(req.split(":", 1)[1])
    except ValueError:
        raise ValueError(f"bad CUDA device {req!r}: expected 'cuda' or 'cuda:N'") from None
    if index < 0:
        raise ValueError(f"bad CUDA device {req!r}: the index must be >= 0")
    return index


def dtype_choice(precision: str, device: torch.device | str) -> tuple[torch.dtype, str]:
    """The torch dtype for `precision` on `device`, and a sentence explaining the choice.

    fp16 on the CPU falls back to fp32 (CPU half-precision kernels are missing or slower than
    fp32); bf16 on a CUDA device without bf16 support falls back to fp32.
    """
    import torch

    prec = (precision or "fp32").strip().lower()
    dev = torch.device(device)
    if prec == "fp32":
        return torch.float32, "fp32 requested"
    if prec == "fp16":
        if dev.type == "cpu":
            return torch.float32, "fp16 requested but the device is the CPU: falling back to fp32"
        return torch.float16, f"fp16 requested on {dev.type}"
    if prec == "bf16":
        if dev.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float32, "bf16 requested but this GPU does not support it: using fp32"
        return torch.bfloat16, f"bf16 requested on {dev.type}"
    raise ValueError(
        f"unknown precision {precision!r}: expected one of {', '.join(PRECISION_CHOICES)}"
    )


def resolve_dtype(precision: str, device: torch.device | str) -> torch.dtype:
    """The torch dtype for `precision` on `device` (see `dtype_choice` for the fallbacks)."""
    return dtype_choice(precision, device)[0]


class ModelKey(NamedTuple):
    """What makes two loaded models interchangeable."""

    name: str  # back end name: "samgeo", "transformers", ...
    model_id: str  # checkpoint path, model folder or hub id
    device: str  # e.g. "cpu", "cuda:0"
    dtype: str  # e.g. "torch.float32"


class ModelCache:
    """Loads each model once per process, however many assets or threads ask for it.

    A per-key lock makes concurrent `get_or_load` calls for the same key wait for one load;
    different keys load in parallel. `loads` counts the loader calls per key (for tests).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key_locks: dict[ModelKey, threading.Lock] = {}
        self._models: dict[ModelKey, object] = {}
        self.loads: dict[ModelKey, int] = {}

    def get_or_load(self, key: ModelKey | tuple[str, str, str, str], loader: Callable[[], T]) -> T:
        key = ModelKey(*key)
        with self._lock:
            if key in self._models:
                return self._models[key]  # type: ignore[return-value]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    return self._models[key]  # type: ignore[return-value]
            model = loader()
            with self._lock:
                self._models[key] = model
                self.loads[key] = self.loads.get(key, 0) + 1
            return model

    def load_count(self, key: ModelKey | tuple[str, str, str, str] | None = None) -> int:
        """Loader calls for `key`, or for every key when `key` is None."""
        with self._lock:
            if key is None:
                return sum(self.loads.values())
            return self.loads.get(ModelKey(*key), 0)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return isinstance(key, tuple) and len(key) == 4 and ModelKey(*key) in self._models

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)

    def evict(self, key: ModelKey | tuple[str, str, str, str]) -> bool:
        """Drop one model (its memory is freed once nothing else holds it)."""
        with self._lock:
            return self._models.pop(ModelKey(*key), None) is not None

    def clear(self) -> None:
        """Drop every model and reset the load counts."""
        with self._lock:
            self._models.clear()
            self._key_locks.clear()
            self.loads.clear()


_MODEL_CACHE = ModelCache()


def model_cache() -> ModelCache:
    """The process-wide cache shared by every resource and asset of a run."""
    return _MODEL_CACHE
