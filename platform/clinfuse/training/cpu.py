"""Process-wide runtime switches training depends on: denormal flushing, glibc's freed-memory policy, and
deterministic kernels.

They are process-wide, so they are the caller's: :func:`training_process` sets them around a run (the pipeline's
entry point uses it) and restores them afterwards; the training functions themselves never flip them, so a
notebook that calls them gets an unchanged process.
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
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# mallopt parameters from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Some glibc versions refuse mmap thresholds above 32 MiB (HEAP_MAX_SIZE / 2); fall back to that there.
_MMAP_THRESHOLDS = (1 << 30, 32 << 20)
_TRIM_THRESHOLD = (1 << 31) - 1
# glibc's documented defaults, restored afterwards (mallopt has no getter, so the previous values are unknowable).
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024


def _mallopt() -> object | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks for reuse instead of returning them to the kernel.

    Returns whether the setting took effect: ``False`` off Linux/glibc (other allocators have their own policies,
    and nothing changes there).
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    mmap_set = any(mallopt(_M_MMAP_THRESHOLD, threshold) == 1 for threshold in _MMAP_THRESHOLDS)
    trim_set = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    return mmap_set and trim_set


def release_freed_memory() -> None:
    """Back to glibc's default policy of returning large freed blocks to the kernel."""
    mallopt = _mallopt()
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)  # type: ignore[operator]
        mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)  # type: ignore[operator]


@contextmanager
def training_process(device: torch.device, keep_memory: bool = True) -> Iterator[None]:
    """Set the process-wide switches a run wants, and restore them when it ends (even on error).

    CPU runs use deterministic kernels and repeat exactly; on CUDA, speed wins (cuDNN autotuning). Denormals
    are flushed to zero and, when ``keep_memory``, freed memory stays in the heap (see the module doc).

    Args:
        device: the run's device.
        keep_memory: the config's ``training.keep_freed_memory``.
    """
    on_cuda = device.type == "cuda"
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(not on_cuda, warn_only=True)
    torch.backends.cudnn.benchmark = on_cuda
    # torch has no getter for denormal flushing; it is off in a fresh process, which is what is restored.
    torch.set_flush_denormal(True)
    kept = keep_memory and keep_freed_memory()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        torch.set_flush_denormal(False)
        if kept:
            release_freed_memory()
