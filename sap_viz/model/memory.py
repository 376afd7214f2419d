"""Give memory that Python and torch have freed back to the system.

Why: glibc keeps freed heap pages for reuse, so a process that once held a large transient (the model's one-time
conversion, a feature extraction) keeps that resident size for the rest of its life. ``malloc_trim`` returns the free
pages of every arena; it changes no value anywhere, only what the process holds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys


def release_freed_memory(collect: bool = True) -> bool:
    """Collect garbage (unless ``collect`` is False: a loop that frees only tensors needs no collection), then return
    free heap pages to the system; whether ``malloc_trim`` gave any back (False where the C library has none, e.g. macOS
    or musl)."""
    if collect:
        gc.collect()
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False
