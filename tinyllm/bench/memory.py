"""Peak memory of a piece of work, measured two ways (chapter 17, "Scale"; Linux only).

- **RSS high-water growth**: the kernel's high-water mark of the resident set (``VmHWM`` in
  ``/proc/self/status``) is reset to the current resident set by writing 5 to
  ``/proc/self/clear_refs``; after the work, VmHWM minus the resident set before it is the most
  memory the work held at once, counted for every allocator (NumPy's, PyTorch's, BLAS buffers).
- **tracemalloc's peak**: the largest total of the Python-domain allocations alive at once, which
  includes every NumPy array's data (NumPy reports its buffers to tracemalloc), so for NumPy code it
  is exact and blind to everything else (PyTorch's allocator is not traced).

A process's freed memory may stay with it (glibc, or ``tinyllm.runtime.keep_freed_memory``), so
each measurement belongs in a fresh process: the benchmarks start one per configuration.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable


def status_kib(field: str) -> int:
    """One ``/proc/self/status`` field in KiB, e.g. ``status_kib("VmRSS")``."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (peak memory is measured on Linux only)")


def measure_peak(work: Callable[[], object]) -> dict[str, float]:
    """Run ``work()`` once; its RSS high-water growth and tracemalloc peak, in MiB.

    Memory allocated before the call (inputs, a model already built) is not in ``rss_mib``; arrays
    made before the call are not in ``tracemalloc_mib`` either, only those made during it.
    """
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset VmHWM to the current resident set
    before = status_kib("VmRSS")
    tracemalloc.start()
    try:
        work()
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return {"rss_mib": (status_kib("VmHWM") - before) / 1024, "tracemalloc_mib": traced / 2**20}
