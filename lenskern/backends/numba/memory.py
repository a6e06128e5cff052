"""Where the Numba backend's large outputs are allocated: in Python, on
transparent huge pages where the kernel offers them (:func:`empty`), then
passed to the compiled loops that fill them."""

from __future__ import annotations

import mmap

import numpy as np

#: Outputs at least this large are allocated on transparent huge pages where
#: the kernel offers them: W's first touch then takes 2 MiB page faults
#: instead of 4 KiB ones, 512 times fewer faults for a W of many MB.
HUGE_PAGE_BYTES = 1 << 21


def empty(shape) -> np.ndarray:
    """np.empty, on huge pages (madvise) for large arrays on Linux."""
    size = int(np.prod(shape)) * 8
    if size < HUGE_PAGE_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.empty(shape)
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buffer.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(buffer, dtype=np.float64).reshape(shape)
