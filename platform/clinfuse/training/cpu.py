"""CPU runtime settings that training depends on for speed: denormal flushing and glibc's freed-memory policy.

Both are process-wide switches rather than per-model settings, which is why they live apart from the loop.
Measured on the 3D throughput benchmark (`make bench`, resnet10 gated fusion, 2 CPU cores):

- Training drives some activations and optimiser states into denormal floats, which CPUs compute up to ~100x
  slower; flushing them to zero cost 15-20% of the epoch and changes no result beyond 1e-38.
- glibc returns freed blocks above a size threshold (mmap'd blocks, and the heap top beyond the trim threshold)
  to the kernel at once, so every training step page-faulted the same tens of MB back in: ~250,000 minor faults
  and a third of the epoch in the kernel. Keeping freed memory in the heap removes them; the process then holds
  on to its peak heap, which training reaches in its first step anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import torch

# mallopt parameters from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Some glibc versions refuse mmap thresholds above 32 MiB (HEAP_MAX_SIZE / 2); fall back to that there.
_MMAP_THRESHOLDS = (1 << 30, 32 << 20)
_TRIM_THRESHOLD = (1 << 31) - 1


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks for reuse instead of returning them to the kernel.

    Returns whether the setting took effect: ``False`` off Linux/glibc (other allocators have their own policies,
    and nothing changes there).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap_set = any(mallopt(_M_MMAP_THRESHOLD, threshold) == 1 for threshold in _MMAP_THRESHOLDS)
    trim_set = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    return mmap_set and trim_set


def tune_cpu_for_training(keep_memory: bool = True) -> None:
    """Flush denormal floats to zero and, when ``keep_memory``, keep freed memory in the heap (see module doc)."""
    torch.set_flush_denormal(True)
    if keep_memory:
        keep_freed_memory()
