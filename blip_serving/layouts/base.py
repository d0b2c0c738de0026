"""What a layout is: which Triton models serve ``blip_vqa`` and which of them run in their own stub processes.

``ensemble``: the ensemble and three Python-backend models, one stub process per instance of each. ``colocated``:
``blip_vqa`` itself is one Python-backend model whose every instance runs the three components in its own process
(one NeuronCore or one CUDA context per instance). Both expose the same models (``blip_vqa`` and its pixel form
``blip_vqa_pixels``, an ensemble on both), outputs and request parameters, and answer the same requests alike; the
one difference a caller can see is that colocated ``blip_vqa``'s metadata also lists the optional PIXELS its pixel
ensemble feeds. Nothing outside ``blip_serving.layouts`` compares layout names.

A layout sits below the targets and the config generator: it says which configs it needs through a
``ConfigBuilder`` it is handed, and how it places itself through the ``Context`` the plan gives it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from blip_serving.deployment import Deployment
from blip_serving.hosts import HostType
from blip_serving.spec import COMPONENT_NAMES, PUBLIC_MODEL

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as pb


class ConfigBuilder(Protocol):
    """Builds one served model's config; ``blip_serving.model_config`` implements it for a target."""

    def python_model(self, name: str) -> pb.ModelConfig: ...

    def ensemble(self, name: str, steps: tuple[str, ...]) -> pb.ModelConfig: ...


class Option(BaseModel):
    """One way to lay the model out on the host, with what it needs and what it is predicted to give."""

    model_config = ConfigDict(extra="forbid")

    layout: str
    deployment: Deployment
    processes: int = Field(description="Stub processes on the host.")
    accelerator_mib_per_unit: float = Field(description="Per NeuronCore where cores are exclusive, else per device.")
    host_mib: float = Field(description="Host memory the processes and host-resident weights need (estimate).")
    predicted_relative_fps: float | None = Field(
        description="Frames/s relative to one core running whole frames; None where processes share the device."
    )
    notes: list[str] = Field(default_factory=list)
    refused: str | None = Field(None, description="Why this option does not fit the host, in one line.")


def balanced_instances(slots: int, cost: dict[str, float]) -> dict[str, int]:
    """Cores per component, at least one each, added one at a time to the stage that bounds throughput."""
    counts = dict.fromkeys(cost, 1)
    for _ in range(slots - len(cost)):
        slowest = min(counts, key=lambda name: counts[name] / cost[name])
        counts[slowest] += 1
    return counts


@dataclass(frozen=True)
class Context:
    """What a layout needs to place itself on a host: the host, what the target keeps where, the model's costs."""

    host_name: str
    host: HostType
    weights_on_host: bool  # the target keeps the weights in host memory (cpu) as well as where they run
    slots: int | None  # processes the accelerators serve exclusively (NeuronCores); None: a shared device
    device_mib: dict[str, float]  # accelerator memory each component's artifacts take
    share: dict[str, float]  # each component's part of a frame's multiply-adds
    weights_mib: dict[str, float]
    per_process_mib: float
    runtime_mib: float

    @property
    def unit_mib(self) -> float:
        """Accelerator memory per exclusive unit (NeuronCore), else per device."""
        total = self.host.accelerator_memory_gib * 1024
        return total / (self.slots or self.host.gpus or 1)

    def option(self, layout: Layout, counts: dict[str, int], fps: float | None, unit_need: float) -> Option:
        """An option running ``counts`` instances of each of the layout's stub models, checked against memory."""
        processes = sum(counts.values())
        components = {c: counts.get(c, counts.get(PUBLIC_MODEL, 0)) for c in COMPONENT_NAMES}
        host_need = processes * self.per_process_mib + (
            sum(self.weights_mib[c] * n for c, n in components.items()) if self.weights_on_host else 0.0
        )
        uniform = {counts[name] for name in layout.python_models}
        deployment = Deployment(
            layout=layout.name,
            instances=max(uniform) if len(uniform) == 1 else 1,
            model_instances=() if len(uniform) == 1 else tuple((n, counts[n]) for n in layout.python_models),
        )
        result = Option(
            layout=layout.name,
            deployment=deployment,
            processes=processes,
            accelerator_mib_per_unit=unit_need,
            host_mib=host_need,
            predicted_relative_fps=fps,
        )
        if self.unit_mib and unit_need > self.unit_mib:
            result.refused = (
                f"needs {unit_need:.0f} MiB of accelerator memory per unit, the host has {self.unit_mib:.0f}"
            )
        elif host_need > self.host.memory_gib * 1024:
            result.refused = f"needs {host_need:.0f} MiB of host memory, the host has {self.host.memory_gib * 1024:.0f}"
        return result


class Layout(ABC):
    name: ClassVar[str]
    # Every model Triton loads for this layout; the server serves exactly these.
    served_models: ClassVar[tuple[str, ...]]
    # The models whose instances are Python stub processes: each takes its own NeuronCores, threads, memory.
    python_models: ClassVar[tuple[str, ...]]
    # The models that another model feeds (not callers): their batchers wait Deployment.step_queue_delay_us.
    fed_models: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str]

    def config_name(self, target: str) -> str:
        """``configs/<name>.pbtxt`` in each served model's folder; Triton picks it with --model-config-name."""
        return target

    def check(self, deployment: Deployment) -> None:
        """Refuse per-model instance counts for models this layout does not run, in one line."""
        unknown = set(dict(deployment.model_instances)) - set(self.python_models)
        if unknown:
            raise ValueError(f"instances given for {sorted(unknown)}, which the {self.name} layout does not run")

    def stub_processes(self, deployment: Deployment) -> int:
        """Stub processes of the layout on the host: every instance of every Python-backend model."""
        return sum(deployment.instances_of(name) for name in self.python_models)

    def queue_delay_us(self, deployment: Deployment, model: str) -> int:
        """The dynamic batcher's delay for ``model``: the step delay where another step feeds it."""
        return deployment.step_queue_delay_us if model in self.fed_models else deployment.max_queue_delay_us

    @abstractmethod
    def placement(self, context: Context) -> Option:
        """How this layout would run on the context's host, and what it needs there (``make plan``)."""

    @abstractmethod
    def configs(self, build: ConfigBuilder) -> dict[str, pb.ModelConfig]:
        """The config of every served model."""
