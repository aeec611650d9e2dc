"""Freed CPU memory handed back to the operating system between chunks (glibc's ``malloc_trim``).

A long video sampled on the CPU with a chunked attention (ComfyUI's sub-quadratic attention) allocates score
blocks that grow a little with every chunk; glibc serves them from its heap, and each freed block leaves a
hole the next, larger one does not fit. The holes are free memory, yet they stay resident: the process's
peak RSS was 2.6x what the sampler holds (benchmarks/README.md, "Memory estimate"). ``malloc_trim(0)``
returns the free pages anywhere in the heap to the OS without changing the allocator's settings. Elsewhere
(no glibc: macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import torch


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_heap(device=None) -> bool:
    """Return the heap's free pages to the OS; True where glibc did it. With ``device`` (where the sampler
    runs) only when that is the CPU: an accelerator's memory is not on this heap."""
    trim = _malloc_trim()
    if trim is None or (device is not None and torch.device(device).type != "cpu"):
        return False
    trim(0)
    return True
