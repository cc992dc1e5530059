"""glibc allocator settings for processes that read many large rows from Lance.

A batched Lance `take` of chip rows (~320 KiB each) allocates fresh buffers on every call. With
glibc's defaults a buffer that size is above the dynamic mmap threshold, so it is mapped, faulted
in page by page (180-250 minor faults a row measured here) and unmapped again when freed; the
reads spend most of their time in the kernel. Raising `M_MMAP_THRESHOLD` keeps such buffers on the
heap, and raising `M_TRIM_THRESHOLD` with it stops glibc from handing the freed top of the heap
back to the kernel after each batch (either one alone changes nothing: the buffers are then
re-faulted through `brk` instead of `mmap`). Measured on this machine, batched takes of chips ran
2-3x faster with both set (`bench/chip_read.py` prints the effect, and
`flywheel_tests/store/test_allocator.py` counts the page faults).

The cost is memory that stays mapped after a burst of reads (up to the largest burst, bounded by
`trim_bytes` above it), which is what a reader that will read again wants. So the settings are
applied only by readers (`ChipReader`, the training dataset in each loader worker), never at
import, and never in processes that measure peak memory of writes.

`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...:glibc.malloc.trim_threshold=...` set before the
process starts does the same; `tune_allocator` is the in-process form, and a no-op (returning
False) where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's upper bound for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2).
MMAP_THRESHOLD_MAX = 32 * 2**20
DEFAULT_TRIM_BYTES = 256 * 2**20

_lock = threading.Lock()
_tuned_pid: int | None = None


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 (only glibc and a few others have it)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl's mallopt is a no-op)
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator(
    mmap_bytes: int = MMAP_THRESHOLD_MAX, trim_bytes: int = DEFAULT_TRIM_BYTES
) -> bool:
    """Raise glibc's mmap and trim thresholds for this process, once. True when applied.

    Set `FLYWHEEL_MALLOC_TUNING=0` to leave the allocator alone (to measure without it)."""
    global _tuned_pid
    if os.environ.get("FLYWHEEL_MALLOC_TUNING", "1") == "0":
        return False
    with _lock:
        if _tuned_pid == os.getpid():
            return True
        libc = _libc()
        if libc is None:
            return False
        mmap_bytes = min(int(mmap_bytes), MMAP_THRESHOLD_MAX)
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_bytes)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, int(trim_bytes))
        )
        if ok:
            _tuned_pid = os.getpid()
            log.debug("malloc: mmap threshold %d B, trim threshold %d B", mmap_bytes, trim_bytes)
        return ok
