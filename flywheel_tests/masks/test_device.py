"""Device and precision choice, and the process-wide model cache."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from flywheel_core.compute import (
    DeviceUnavailableError,
    ModelCache,
    ModelKey,
    dtype_choice,
    resolve_device,
    resolve_dtype,
)

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
no_accelerator = pytest.mark.skipif(HAS_CUDA or HAS_MPS, reason="this machine has a GPU")


@no_accelerator
def test_auto_resolves_to_the_cpu_and_says_why():
    device, reason = resolve_device("auto")
    assert device == torch.device("cpu")
    assert "no CUDA or MPS device" in reason and "CPU" in reason


def test_cpu_is_always_there():
    device, reason = resolve_device("CPU ")
    assert device.type == "cpu" and "cpu" in reason


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_asking_for_cuda_without_it_fails_clearly():
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(DeviceUnavailableError, match="'auto' or 'cpu'"):
        resolve_device("cuda:1")


@pytest.mark.skipif(HAS_MPS, reason="this machine has MPS")
def test_asking_for_mps_without_it_fails_clearly():
    with pytest.raises(DeviceUnavailableError, match="MPS is not available"):
        resolve_device("mps")


def test_unknown_device_and_precision_are_rejected():
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_dtype("int8", "cpu")


def test_fp16_on_the_cpu_falls_back_to_fp32_with_a_reason():
    assert resolve_dtype("fp16", torch.device("cpu")) == torch.float32
    dtype, reason = dtype_choice("fp16", "cpu")
    assert dtype == torch.float32 and "falling back to fp32" in reason
    assert resolve_dtype("fp32", "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16


def test_model_cache_loads_once_for_two_gets():
    cache = ModelCache()
    key = ModelKey("test", "model-a", "cpu", "torch.float32")
    calls = []

    def loader():
        calls.append(1)
        return object()

    first = cache.get_or_load(key, loader)
    second = cache.get_or_load(tuple(key), loader)
    assert first is second
    assert len(calls) == 1 and cache.load_count(key) == 1 and cache.load_count() == 1
    other = cache.get_or_load(key._replace(dtype="torch.float16"), loader)
    assert other is not first and cache.load_count() == 2
    assert key in cache and len(cache) == 2
    cache.clear()
    assert len(cache) == 0 and cache.load_count() == 0


def test_model_cache_is_thread_safe():
    cache = ModelCache()
    key = ModelKey("test", "slow-model", "cpu", "torch.float32")
    results = []

    def loader():
        time.sleep(0.2)
        return object()

    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_load(key, loader)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r is results[0] for r in results)
    assert cache.load_count(key) == 1
