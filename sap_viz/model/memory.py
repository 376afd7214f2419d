"""Give memory that Python and torch have freed back to the system.

Why: glibc keeps freed heap pages for reuse, so a process that once held a large transient (the model's one-time
conversion, a feature extraction) keeps that resident size for the rest of its life. ``malloc_trim`` returns the free
pages of every arena; it changes no value anywhere, only what the process holds.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

M_ARENA_MAX = -8  # mallopt's parameter number for the arena cap (glibc's malloc.h)


def _libc():
    """The C library already loaded in this process (``find_library`` would start a subprocess to look for it)."""
    return ctypes.CDLL(None)


def release_freed_memory(collect: bool = True) -> bool:
    """Collect garbage (unless ``collect`` is False: a loop that frees only tensors needs no collection), then return
    free heap pages to the system; whether ``malloc_trim`` gave any back (False where the C library has none, e.g. macOS
    or musl)."""
    if collect:
        gc.collect()
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(_libc().malloc_trim(0))
    except (OSError, AttributeError):
        return False


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's heaps at ``arenas`` (as ``MALLOC_ARENA_MAX`` would; a value that variable sets is kept); whether
    the cap took effect. Call it before threads start.

    Why: glibc gives each thread that allocates under contention its own heap, up to eight per core, and memory freed in
    one is never reused by another. A server whose request, warm-up and map threads take turns on one model gains
    nothing from more, and on two cores the default of 16 heaps left ~50-100 MB more resident.
    """
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        return bool(_libc().mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
