"""Latency samples and the figures the benchmarks print: frames per second, p50 and p99."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

#: What ``concurrent`` calls once in each caller's thread: a caller, open while its ``with`` lasts.
MakeCaller = Callable[[], AbstractContextManager[Callable[[], object]]]


def percentile(values: Sequence[float], percent: float) -> float:
    """The benchmarks' one percentile: linear interpolation between the closest ranks (numpy's default), so p99
    of few samples lies between the two slowest instead of jumping to the slowest. NaN for no values."""
    return float(np.percentile(values, percent)) if len(values) else float("nan")


@dataclass(frozen=True)
class Run:
    """``count`` frames done by ``concurrency`` callers in ``seconds``; ``latencies`` in seconds."""

    latencies: tuple[float, ...]
    seconds: float
    concurrency: int = 1

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def fps(self) -> float:
        return self.count / self.seconds

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000

    def summary(self) -> dict[str, float]:
        return {
            "concurrency": self.concurrency,
            "frames": self.count,
            "fps": round(self.fps, 4),
            "p50_ms": round(self.p50_ms, 1),
            "p99_ms": round(self.p99_ms, 1),
        }


def sequential(frame: Callable[[], object], *, frames: int, warmup: int = 2) -> Run:
    """One caller, back to back: the latency is also the time per frame."""
    for _ in range(warmup):
        frame()
    latencies = []
    started = time.perf_counter()
    for _ in range(frames):
        begin = time.perf_counter()
        frame()
        latencies.append(time.perf_counter() - begin)
    return Run(tuple(latencies), time.perf_counter() - started)


def concurrent(make_caller: MakeCaller, *, concurrency: int, seconds: float) -> Run:
    """``concurrency`` callers back to back for ``seconds``, each after one warm call.

    Each caller is made, used and closed in its own thread: tritonclient's HTTP client (gevent) must stay on the
    thread that made it.
    """
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    window: dict[str, float] = {}

    def open_window() -> None:  # runs once, when every caller is warm, before any is released
        window["started"] = time.perf_counter()
        window["deadline"] = window["started"] + seconds

    ready = threading.Barrier(concurrency + 1, action=open_window)

    def loop() -> None:
        warm = False
        try:
            with make_caller() as call:
                call()
                warm = True
                ready.wait()
                while time.perf_counter() < window["deadline"]:
                    begin = time.perf_counter()
                    call()
                    with lock:
                        latencies.append(time.perf_counter() - begin)
        except BaseException as error:  # surfaced below: a failed frame invalidates the figure
            errors.append(error)
            if not warm:  # the others wait for this caller at the barrier: release them
                ready.abort()

    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} caller(s) failed: {errors[0]!r}") from errors[0]
    return Run(tuple(latencies), time.perf_counter() - window["started"], concurrency)
