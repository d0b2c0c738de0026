"""What every target (cpu, gpu, neuron, ...) provides: one interface, one module per target.

A target decides where a component is traced and how (``trace``, ``tolerance``), where its artifact runs inside
the Triton stub (``load``, ``prepare_instance``) and what its config says (``instance_kind``,
``config_parameters``). Nothing outside ``blip_serving.targets`` compares target names: code asks the target.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch

    from blip_serving.deployment import Deployment
    from blip_serving.hosts import HostType
    from blip_serving.layouts import Layout
    from blip_serving.stub_parameters import StubParameters


class TargetInfo(BaseModel):
    """``Target.describe()``, in the manifest: the target and the build settings the stub needs to load the
    artifacts. One writer (the build, through ``describe``), one reader (``from_description``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    device: str
    precision: str
    compiler_args: list[str]
    static_shapes: bool


@dataclass(frozen=True)
class InstanceDevice:
    """Where one Triton model instance runs its artifacts: the torch device to load on, and a line for the log."""

    load_device: str
    description: str


@dataclass(frozen=True)
class Target(ABC):
    """One target, with the build settings it was resolved with (precision, compiler arguments, static shapes)."""

    name: ClassVar[str]
    # ModelInstanceGroup kind in config.pbtxt: KIND_CPU, KIND_GPU, or KIND_MODEL (the model places itself).
    instance_kind: ClassVar[str]
    # The torch device the build traces and verifies on.
    build_device: ClassVar[str] = "cpu"
    # Placement (blip_serving.placement): whether every build is one artifact per shape bucket, what the
    # accelerator holds of an fp32 weight byte, and whether the weights live in host memory.
    always_static: ClassVar[bool] = False
    # What the plan's accelerator-memory estimate leaves out on this target, printed with the plan; None: nothing
    # worth saying (the cpu has no accelerator; a gpu plan states its own CUDA-context assumption in hosts.toml).
    device_memory_note: ClassVar[str | None] = None
    device_weight_scale: ClassVar[float] = 1.0
    weights_on_host: ClassVar[bool] = False
    # Whether Triton reports the device's own metrics (utilization, memory, power: nv_gpu_*) for this target.
    gpu_metrics: ClassVar[bool] = False

    precision: str = "fp32"
    compiler_args: tuple[str, ...] = ()
    # One artifact per shape bucket (a NEFF has one shape); cpu and gpu can build this way to run the same padding.
    static_shapes: bool = False

    # -- build time -------------------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def resolve(cls, *, fp16: bool = False, compiler_args: str | None = None, static_shapes: bool = False) -> Target:
        """Check the target can build here and fix its settings; raise ``TargetUnavailableError`` in one line."""

    @property
    def tolerance(self) -> float:
        """Largest error of the reloaded artifact against the original module, relative to the output's range."""
        return 2e-2 if self.precision == "fp16" else 1e-4

    @property
    def float_dtype(self) -> torch.dtype:
        """The dtype the traced module runs in (fp32 unless the target runs the module itself in half)."""
        import torch

        return torch.float32

    def trace(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> Any:
        """Trace one component; inputs are already on ``build_device`` in ``float_dtype``."""
        import torch

        with torch.no_grad():
            return torch.jit.trace(module, example_inputs, check_trace=False)

    @property
    def runs_here(self) -> bool:
        """Whether this machine can run what it builds (a NEFF needs an Inferentia device; cpu and gpu always can,
        since ``resolve`` refused a gpu build without CUDA)."""
        return True

    def describe(self) -> TargetInfo:
        """What the manifest records of this target; ``from_description`` reads it back in the stub."""
        return TargetInfo(
            name=self.name,
            device=self.build_device,
            precision=self.precision,
            compiler_args=list(self.compiler_args),
            static_shapes=self.static_shapes,
        )

    @classmethod
    def from_description(cls, description: TargetInfo) -> Target:
        """The target a manifest was built for, without checking that it could build here."""
        return cls(
            precision=description.precision,
            compiler_args=tuple(description.compiler_args),
            static_shapes=description.static_shapes,
        )

    def deployment_note(self, deployment: Deployment) -> str | None:
        """A line the build prints about what this deployment needs of the host, if anything."""
        return None

    def sdk_versions(self) -> dict[str, str]:
        """Versions of the target's own SDK that the manifest records beside python, torch and transformers."""
        return {}

    # -- serving ----------------------------------------------------------------------------------------------
    def check_build(self, versions: Mapping[str, str]) -> None:
        """Refuse, in one line, artifacts whose recorded SDK versions this process cannot run; most targets can."""
        return None

    def check_serving(self) -> None:
        """Fail with one line before Triton starts if this machine cannot serve the target; most always can."""
        return None

    def load(self, path: str, device: str) -> Any:
        """Load a saved artifact onto ``device`` for inference."""
        import torch

        module = torch.jit.load(path, map_location=device)
        module.eval()
        return module

    def load_device(self, device_id: int = 0) -> str:
        """The torch device artifacts load on in a process that serves from device ``device_id``."""
        return "cpu"

    def prepare_instance(
        self, parameters: StubParameters, instances: int, index: int, device_id: int
    ) -> InstanceDevice:
        """Run in ``initialize`` before any artifact loads: pick (and reserve) this instance's device."""
        device = self.load_device(device_id)
        return InstanceDevice(load_device=device, description=device)

    def config_parameters(self, deployment: Deployment, layout: Layout, component: str) -> dict[str, Any]:
        """Target-specific fields of a stub model's ``StubParameters``, typed (the record writes the strings)."""
        return {}

    def visible_cores(self, deployment: Deployment) -> dict[str, list[str]] | None:
        """Per stub model, the accelerator cores each instance may see, where processes own cores exclusively."""
        return None

    def process_slots(self, host: HostType) -> int | None:
        """How many processes the host's accelerators can serve at once, each owning its share exclusively;
        None where processes share the device (a GPU, the CPU)."""
        return None
