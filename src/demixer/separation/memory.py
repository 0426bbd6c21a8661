"""Giving freed memory back to the operating system between chunks.

glibc's allocator keeps freed blocks of the heap for reuse, and raises its mmap threshold as large
blocks are freed, so after a few chunks of a big model most activations live in a heap whose free
holes stay resident. ``malloc_trim(0)`` returns those holes (``madvise``) without changing how
anything is allocated. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> None:
    """Return the allocator's free memory to the OS (glibc ``malloc_trim``); cheap, safe at any time."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
