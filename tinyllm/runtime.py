"""Process-level settings a training run may opt into (chapter 11, "Making it fast").

NumPy allocates a fresh array for almost every intermediate result, and a training step frees the
same large arrays again and again. glibc's allocator returns big freed blocks to the operating
system at once (they are ``mmap``-ed, or trimmed from the heap top), so the next step pays for page
faults and zeroing all over again. Telling the allocator to keep freed memory makes a NumPy training
step 13-19% faster on our machines. This is never done at import: ``tinyllm train`` opts in.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's <malloc.h>
M_MMAP_MAX = -4


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS reports one (Linux), else
    ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def limit_blas_threads(threads: int) -> int:
    """Use at most ``threads`` BLAS threads for matrix products from now on (needs threadpoolctl);
    returns the number set: ``threads``, capped at :func:`available_cores`.

    Two threads are fastest on an idle 2-core machine; on a shared or virtual machine whose cores
    are busy with other work, one thread can be several times faster: waiting BLAS threads spin.
    More threads than cores only spin: OpenBLAS takes up to 64, and 64 threads on 2 cores made one
    (512, 512) product take 0.5 s instead of 1 ms: ``--threads 100000`` seemed to hang. So: a cap.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {threads!r}")
    threads = min(threads, available_cores())
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
    return threads


def blas_threads() -> int | None:
    """How many threads the BLAS library behind NumPy uses now (None if none is found)."""
    from threadpoolctl import threadpool_info

    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return counts[0] if counts else None


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (no trimming, no mmap); True if it took effect.

    Linux with glibc only; elsewhere (macOS, Windows, musl) this does nothing and returns False.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    trimmed = mallopt(M_TRIM_THRESHOLD, 2**30)  # trim only when over 1 GiB sits free at the top
    no_mmap = mallopt(M_MMAP_MAX, 0)  # large arrays from the heap, where freed blocks are reused
    return bool(trimmed and no_mmap)
