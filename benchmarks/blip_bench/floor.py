"""The in-process floor of the colocated pipeline on its device: frames/s and p50 per frame batch, with the split
over the stages and device memory. What Triton runs in one stub, minus Triton: no served figure can beat it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from blip_bench.frames import BEHAVIOR_QUESTIONS, SAMPLE
from blip_bench.timing import Run
from blip_contract import SCORES_ONLY


def synchronize() -> None:
    """Wait for queued device work, so a timer measures it (no-op without CUDA)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def floor(
    manifest: Any,
    batches: list[int],
    seconds: float,
    log: Callable[[str], None],
    questions: tuple[str, ...] = BEHAVIOR_QUESTIONS,
) -> dict[str, Any]:
    """Frames/s and p50 per frame batch (scores only, ``questions`` on every frame), the split over the components,
    and device memory."""
    import torch

    from blip_serving.stub.models import load_pipeline

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    pipeline = load_pipeline(manifest)
    weights = torch.cuda.memory_allocated() if cuda else 0
    image = SAMPLE.read_bytes()
    asked = np.array([q.encode() for q in questions], dtype=object)
    levels = []
    for batch in batches:
        stages: dict[str, list[float]] = {}
        marks: list[float] = []

        def clock(stage: str, stages=stages, marks=marks) -> None:
            synchronize()
            now = time.perf_counter()
            stages.setdefault(stage, []).append(now - marks[-1])
            marks.append(now)

        def frame_batch(batch=batch, clock=clock, marks=marks) -> None:
            synchronize()
            marks.append(time.perf_counter())
            items = [
                pipeline.prepare({"IMAGE": np.array([image], dtype=object), "QUESTIONS": asked}, {SCORES_ONLY: True})
                for _ in range(batch)
            ]
            clock("decode_and_tokenize")
            pipeline.run(items, clock)

        for _ in range(2):
            frame_batch()
        for values in stages.values():
            values.clear()
        latencies, started = [], time.perf_counter()
        while time.perf_counter() - started < seconds or len(latencies) < 3:
            begin = time.perf_counter()
            frame_batch()
            latencies.append(time.perf_counter() - begin)
        elapsed = time.perf_counter() - started
        run = Run(tuple(latencies), elapsed)
        # decode_and_tokenize: image decoding and question tokenization on the host; image_encoder includes the
        # resize and normalization of the frames (host) and the artifact (device).
        stage_ms = {name: round(float(np.median(values)) * 1000, 2) for name, values in stages.items()}
        level = {
            "frame_batch": batch,
            "fps": round(batch * run.count / elapsed, 2),
            "p50_ms_per_batch": round(run.p50_ms, 2),
            "p50_ms_per_frame": round(run.p50_ms / batch, 3),
            "stage_ms": stage_ms,
            "batches": run.count,
        }
        levels.append(level)
        log(f"  floor batch {batch}: {level['fps']} frames/s, p50 {level['p50_ms_per_batch']} ms, {stage_ms}")
    memory = {}
    if cuda:
        memory = {
            "weights_mib": round(weights / 2**20, 1),
            "peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "reserved_mib": round(torch.cuda.memory_reserved() / 2**20, 1),
        }
    return {"levels": levels, "device_memory": memory}
