"""The Python backend's shared-memory regions in /dev/shm: which a stub maps, and clearing what a killed Triton left."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from pathlib import Path

SHM_PREFIX = "triton_python_backend_shm"


def remove_stale_shm_regions(min_age_s: float = 10.0) -> list[str]:
    """Unlink Python-backend shared-memory regions that no process maps any more; the names removed.

    A SIGKILLed Triton (OOM killer, a crashed container, ``kill -9``) leaves its stubs' regions in /dev/shm, at
    least 1 MiB each. In a pod, /dev/shm is an emptyDir that outlives container restarts: without this, every
    crash would shrink it until Triton could not start. A region in use is mapped by its stub or by tritonserver;
    ``min_age_s`` spares one created a moment ago and not mapped yet.
    """
    shm = Path("/dev/shm")
    candidates = list(shm.glob(f"{SHM_PREFIX}*")) if shm.is_dir() else []
    if not candidates:
        return []
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        with contextlib.suppress(OSError):
            mapped.update(line.rsplit(None, 1)[-1] for line in maps.read_text().splitlines() if "/dev/shm/" in line)
    removed = []
    now = time.time()
    for region in candidates:
        with contextlib.suppress(OSError):
            if str(region) not in mapped and now - region.stat().st_mtime > min_age_s:
                region.unlink()
                removed.append(region.name)
    return removed


def stub_regions(command_lines: Iterable[list[str]]) -> list[str]:
    """The shared-memory regions named on stubs' command lines."""
    return [arg for args in command_lines for arg in args if arg.startswith(SHM_PREFIX)]


def unlink_regions(names: Iterable[str]) -> None:
    for name in names:
        Path("/dev/shm", name).unlink(missing_ok=True)
