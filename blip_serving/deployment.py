"""The deployment record: how one target's repository runs on its machine (layout, instances, threads, batching).

One writer per source (``make plan`` writes it into the plan, ``blip-build`` and ``make serve`` take it from the plan
or from their flags), one reader (the config generator, ``blip_serving.model_config``). What depends on the layout's
models (stub processes, which batchers wait) is the layout's to say: ``blip_serving.layouts``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_LAYOUT = "ensemble"


class Deployment(BaseModel):
    """How a target's repository is laid out on its machine: instances per component and their resources."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    layout: str = Field(
        DEFAULT_LAYOUT, description="Which models serve blip_vqa (blip_serving.layouts): ensemble or colocated."
    )
    instances: int = Field(1, ge=1, description="Instances of every stub model, unless model_instances says.")
    model_instances: tuple[tuple[str, int], ...] = Field(
        (), description="Per-model instance counts that differ from instances (a plan balancing the stages)."
    )
    neuron_cores_per_instance: int = Field(1, ge=1, description="NeuronCores each neuron instance reserves.")
    intra_op_threads: int = Field(
        0, ge=0, description="Threads per instance; 0: the machine's cores shared evenly, decided where it loads."
    )
    # Measured with `make bench-pixels` (random-host, colocated, pixels through the API tier, 8 callers, two runs
    # each, 2026-12-07): 0 us gave 1.16-1.17 requests per execute at 1080p and 6.6-6.9 fleet CPU-ms a frame, 4000
    # gave 1.58-1.60 and 5.6-6.2 (360p: 1.80-1.85 -> 2.14-2.23 per execute). The price is at most 4 ms a frame at
    # low load, against a camera's 500 ms between frames; a preferred size (4, 8) ends the wait early.
    max_queue_delay_us: int = Field(
        4000,
        ge=0,
        description="How long a model that callers feed (image encoder, colocated blip_vqa) may hold a frame to "
        "fill a batch; 0 takes what is queued.",
    )
    # The step before hands over its batch a response at a time, so with 0 the first frame runs alone. Measured at
    # concurrency 8 (`python -m blip_bench.host`, random-host): 2.1 requests per execute at 0 us, 2.7 at 1000,
    # 3.8 at 4000; at concurrency 1 each such step adds up to this delay to a frame.
    step_queue_delay_us: int = Field(
        4000, ge=0, description="How long a step that another step feeds (ensemble text encoder, decoder) may wait."
    )
    fast_resize: bool = Field(
        False,
        description="Decode JPEGs at a reduced scale and reduce before the bicubic resize: less host CPU for large "
        "frames, pixels that differ from the checkpoint processor's (make bench measures both).",
    )
    host_step_tensors: bool = Field(
        False,
        description="Tensors between the steps cross through host memory even where models run on a device: for "
        "hosts where the Python backend cannot share device memory between processes (CUDA IPC).",
    )

    def replaced(self, **changes: object) -> Deployment:
        """A copy with ``changes``, validated as a new record is (``model_copy`` would skip the checks)."""
        return Deployment.model_validate(self.model_dump() | changes)

    def instances_of(self, model: str) -> int:
        return dict(self.model_instances).get(model, self.instances)
