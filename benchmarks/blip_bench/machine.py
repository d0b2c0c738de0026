"""The machine a figure was measured on, and the fp32 matmul rate that bounds any fp32 model on it."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import torch

from blip_serving.resources import memory_gib, usable_cores


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": usable_cores(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def matmul_gflops(size: int = 2048, seconds: float = 3.0) -> float:
    """Sustained fp32 GEMM rate with all cores: the ceiling any fp32 model on this machine can reach."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        torch.mm(a, b)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.mm(a, b)
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - started) / 1e9
