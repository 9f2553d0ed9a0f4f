"""The C heap of a serving process: keep freed memory for the next request.

glibc's malloc gives memory back to the system as soon as more than 128 KiB is free at
the top of the heap, and serves allocations of 128 KiB and more with their own mmap. A
server frees about as much as it allocates on every request, so with request bodies of
64 KiB (each socket read is one bytes object) the heap shrank and grew on every request:
~36 page faults a request, and `make bench`'s post scenario ran at 60% of its speed.
Up to `KEEP` bytes of freed heap are now kept for reuse; what a worker holds after a
burst stays bounded by that, and memory beyond it still goes back.
"""

from __future__ import annotations

import ctypes
import os

KEEP = 8 << 20  # bytes: the most freed memory kept at the top of the heap
MMAP_FROM = 8 << 20  # bytes: allocations this size and up get their own mapping
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> None:
    """Tune glibc's malloc for a server process; an operator's own MALLOC_*_ environment
    variables win, and elsewhere (musl, macOS) this does nothing."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(_M_MMAP_THRESHOLD, MMAP_FROM)
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        mallopt(_M_TRIM_THRESHOLD, KEEP)
