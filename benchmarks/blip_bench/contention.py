"""What a server costs when nothing asks it anything, and what it does when something else wants a core.

A stub's OpenMP team has as many threads as the machine has cores. Workers that spin while waiting (ACTIVE, or
libgomp's default spin before sleeping) burn a core on an idle fleet, and beside any other busy process every
barrier waits for a thread the kernel has descheduled: both are measured here, not assumed.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of ``pid`` and its live descendants (tritonserver and its stubs)."""
    total = 0.0
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(process.cpu_times()[:2])
    return total


def idle_cpu_percent(pid: int, seconds: float = 3.0, settle_s: float = 1.0) -> float:
    """CPU the tree burns with no request in flight, in percent of one core, after ``settle_s`` of quiet."""
    time.sleep(settle_s)
    before, started = tree_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (tree_cpu_seconds(pid) - before) / (time.monotonic() - started)


@contextlib.contextmanager
def busy_core(limit_s: float = 300.0) -> Iterator[None]:
    """Another process spinning on one core for the block: a neighbour (sidecar, node agent, second pod).

    It stops by itself after ``limit_s`` should the block never end.
    """
    spin = f"import time\nend = time.monotonic() + {limit_s}\nwhile time.monotonic() < end:\n    pass\n"
    process = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.3)  # running before the first frame
        yield
    finally:
        process.kill()
        process.wait()
