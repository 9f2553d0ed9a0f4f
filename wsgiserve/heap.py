"""The memory of a serving process: the C heap and Python's cyclic collector.

The C heap: keep freed memory for the next request.

glibc's malloc gives memory back to the system as soon as more than 128 KiB is free at
the top of the heap, and serves allocations of 128 KiB and more with their own mmap. A
server frees about as much as it allocates on every request, so with request bodies of
64 KiB (each socket read is one bytes object) the heap shrank and grew on every request:
~36 page faults a request, and `make bench`'s post scenario ran at 60% of its speed.
Up to `KEEP` bytes of freed heap are now kept for reuse; what a worker holds after a
burst stays bounded by that, and memory beyond it still goes back.

The collector: a request allocates a few dozen objects that reference counting frees
(the server leaves no cycles; tests/functional/test_garbage.py), but with a thousand
requests in flight their allocations outrun their frees and every 700 set off a
collection: ~5% of a worker under make bench's crowd, a full collection walking every
object of the app each time. Once the app is loaded its objects are frozen (never
walked again: gc.freeze, which also spares the pages a --preload fork shares), and a
young collection waits for 10,000 new objects, as an app with cycles of its own still
gets collected often. An app that set its own threshold keeps it.
"""

from __future__ import annotations

import ctypes
import gc
import os

KEEP = 8 << 20  # bytes: the most freed memory kept at the top of the heap
MMAP_FROM = 8 << 20  # bytes: allocations this size and up get their own mapping
YOUNG_THRESHOLD = 10_000  # new objects between young collections (CPython's default: 700)
_DEFAULT_THRESHOLDS = (700, 10, 10)
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


def settle_after_app_load() -> None:
    """Freeze what exists now (the app, the server) and space out young collections."""
    if gc.get_threshold() == _DEFAULT_THRESHOLDS:
        gc.set_threshold(YOUNG_THRESHOLD, *_DEFAULT_THRESHOLDS[1:])
    gc.freeze()
