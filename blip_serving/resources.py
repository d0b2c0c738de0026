"""This machine's cores, and how a process's share of them is counted: one rule for the plan and the stubs."""

from __future__ import annotations

import os
from pathlib import Path


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a container's cpuset narrows), at least one."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def memory_gib() -> float:
    """Total memory of this machine in GiB (0 where /proc/meminfo cannot be read)."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return 0.0
    kib = next((int(line.split()[1]) for line in lines if line.startswith("MemTotal")), 0)
    return round(kib / 2**20, 1)


def core_share(processes: int, cores: int | None = None) -> int:
    """``cores`` (default: this machine's) shared evenly by ``processes``, at least one each."""
    return max(1, (cores if cores is not None else usable_cores()) // max(1, processes))


def threads_per_instance(configured: int, instances: int, cores: int | None = None) -> int:
    """Intra-op threads of one model instance: the configured count, else the cores shared by the instances.

    More threads than cores per instance oversubscribes OpenMP, and every request then waits for the slowest
    thread; fewer leaves cores idle at low load.
    """
    return configured if configured > 0 else core_share(instances, cores)
