"""Keep freed host memory in the process instead of handing it back to the kernel (glibc's malloc).

glibc serves every block above its mmap threshold (128 KiB, rising to at most 32 MiB as blocks are
freed) with a fresh mmap and unmaps it on free, and trims the heap's top above M_TRIM_THRESHOLD. On
a CPU every activation of a training step and of an evaluation chunk is such a block (one of the
3-seed fig2 stack's evaluation chunks: 37.7 MB a tensor), so each op paid first-touch page faults,
the kernel zeroing fresh pages, on top of its arithmetic. Served from a heap that is never trimmed,
the blocks are reused. Nothing computed changes, only where the bytes live: the runs are
bit-identical, and a process's resident memory stays at its peak. scripts/bench_host_memory.py
measures the gain and checks the bits (results/bench/host_memory.txt: 1.12x a step, 1.52x an
evaluation).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt's parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
_applied = False


def keep_host_memory() -> bool:
    """No mmap'd blocks and no trimming for the rest of the process; whether it applied (glibc only:
    elsewhere, or where libc has no `mallopt`, nothing changes)."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt answers 1 where it took the value; musl and other libcs have no such knobs.
    _applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return _applied
