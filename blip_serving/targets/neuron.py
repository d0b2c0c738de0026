"""TARGET=neuron: ``torch_neuronx.trace`` once per shape bucket, each instance on its own NeuronCores.

Tracing follows the AWS Neuron documentation: a NEFF is compiled for one shape, so the build is always
static-shape, and ``torch_neuronx`` must be imported before ``torch.jit.load`` to register its ops. Where the SDK
is missing the build stops at once with one line, before anything is written.

A NeuronCore, once reserved by a process, cannot be used by another, and every Triton Python-backend instance is
its own process: each component gets a block of cores, split evenly among its instances (python_backend's
``inferentia/`` scheme), and each instance sets ``NEURON_RT_VISIBLE_CORES`` before the SDK import.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from blip_contract.env import env_name
from blip_contract.records import Strict, load_file
from blip_serving.deployment import Deployment
from blip_serving.errors import ArtifactError, TargetUnavailableError
from blip_serving.hosts import HostType
from blip_serving.layouts import Layout, layout_of
from blip_serving.targets.base import InstanceDevice, Target

if TYPE_CHECKING:
    import torch

    from blip_serving.stub_parameters import StubParameters

DEFAULT_NEURON_COMPILER_ARGS = "--auto-cast matmult --auto-cast-type fp16"
NEURON_VISIBLE_CORES_ENV = "NEURON_RT_VISIBLE_CORES"


def require_neuron_sdk() -> Any:
    """Import torch_neuronx (it registers the Neuron ops TorchScript needs), or say plainly that it is missing."""
    try:
        return importlib.import_module("torch_neuronx")
    except ImportError as error:
        raise TargetUnavailableError(
            "TARGET=neuron needs torch-neuronx (AWS Neuron SDK), which is not installed: install it on an "
            "Inferentia2/Trainium host from https://pip.repos.neuron.amazonaws.com "
            f"({error.__class__.__name__}: {error})"
        ) from error


class ReleaseInfo(Strict):
    neuron: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    released: str
    source: str
    retrieved: str
    note: str


class ReleaseImage(Strict):
    base: str
    triton: str
    ubuntu: str
    python: str = Field(pattern=r"^3\.\d+$")
    source: str


class ReleasePip(Strict):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    index: str
    torch: str
    torch_neuronx: str = Field(alias="torch-neuronx")
    neuronx_cc: str = Field(alias="neuronx-cc")


class NeuronRelease(Strict):
    """``neuron_release.toml`` whole: the release, its image, its pip and apt pins, what the node needs."""

    release: ReleaseInfo
    image: ReleaseImage
    pip: ReleasePip
    apt: dict[str, str]
    node: dict[str, str]


RELEASE_FILE = Path(str(resources.files("blip_serving.targets") / "neuron_release.toml"))


def neuron_release(path: Path = RELEASE_FILE) -> NeuronRelease:
    """The one Neuron release the fleet runs (``neuron_release.toml``, package data): its exact pins and sources."""
    return load_file(NeuronRelease, path)


def _version(module: str, distribution: str) -> str:
    """A package's version: its module's ``__version__``, else its installed distribution's, else "not installed"."""
    try:
        version = getattr(importlib.import_module(module), "__version__", None)
    except ImportError:
        version = None
    if version:
        return str(version)
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def installed_sdk() -> dict[str, str]:
    """The torch-neuronx and neuronx-cc this process would trace or load with."""
    require_neuron_sdk()
    return {
        "torch_neuronx": _version("torch_neuronx", "torch-neuronx"),
        "neuronx_cc": _version("neuronxcc", "neuronx-cc"),
    }


def _described(versions: Mapping[str, str]) -> str:
    return (
        f"torch-neuronx {versions.get('torch_neuronx', 'unknown')}, neuronx-cc {versions.get('neuronx_cc', 'unknown')}"
    )


def check_release(installed: Mapping[str, str]) -> None:
    """Refuse to build with an SDK outside the matrix's release, in one line naming both."""
    release = neuron_release()
    wanted = {"torch_neuronx": release.pip.torch_neuronx, "neuronx_cc": release.pip.neuronx_cc}
    if any(installed.get(name) != version for name, version in wanted.items()):
        raise TargetUnavailableError(
            f"TARGET=neuron builds with Neuron {release.release.neuron} ({_described(wanted)}); this machine "
            f"has {_described(installed)}: install those (docker/Dockerfile.neuron does) or move the release in "
            "blip_serving/targets/neuron_release.toml"
        )


# The allocation this process started with, kept apart from the value an instance sets for itself (a process that
# places a second instance, as the tests do, must not read the first one's cores as an allocation).
ALLOCATION_ENV = env_name("NEURON_ALLOCATION")  # BLIP_NEURON_ALLOCATION


def allocation() -> str | None:
    """The cores a Neuron device plugin allocated to this container, if any (``NEURON_RT_VISIBLE_CORES`` as the
    process found it before any instance set its own)."""
    if ALLOCATION_ENV not in os.environ:
        os.environ[ALLOCATION_ENV] = os.environ.get(NEURON_VISIBLE_CORES_ENV, "")
    return os.environ[ALLOCATION_ENV] or None


def parse_core_list(text: str) -> list[int]:
    """``NEURON_RT_VISIBLE_CORES`` as the runtime reads it: ``3``, ``2-3``, ``0,2,4`` or ``0-1,4-5``."""
    cores: list[int] = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ValueError(f"{NEURON_VISIBLE_CORES_ENV}={text!r} is not a list of cores or ranges")
        cores.extend(range(int(first), int(last or first) + 1))
    return cores


def within_allocation(planned: str, allocated: str) -> str:
    """The plan's cores (numbered from 0 on the host) mapped into the cores a device plugin allocated to this
    container; a plan that needs more cores than were allocated fails in one line naming both."""
    pool = parse_core_list(allocated)
    indices = parse_core_list(planned)
    if not pool or max(indices) >= len(pool):
        raise TargetUnavailableError(
            f"the plan places this instance on NeuronCores {planned} (of a block numbered from 0), but the container "
            f"was allocated {len(pool)} core(s), {NEURON_VISIBLE_CORES_ENV}={allocated}: request as many "
            "aws.amazon.com/neuroncore as the plan needs, or make the plan for this allocation"
        )
    return ",".join(str(pool[i]) for i in indices)


def neuron_visible_cores(first: int, last: int, instances: int, index: int) -> str:
    """``NEURON_RT_VISIBLE_CORES`` for instance ``index`` of a component that owns cores ``first..last``.

    The block is split evenly in instance order. A process that set nothing would reserve every core of the
    machine and starve the other instances and components.
    """
    total = last - first + 1
    if first < 0 or total < 1:
        raise ValueError(f"NeuronCore range {first}..{last} is empty or negative")
    if instances < 1 or total % instances:
        raise ValueError(f"{total} NeuronCores ({first}..{last}) cannot be split evenly among {instances} instances")
    if not 0 <= index < instances:
        raise ValueError(f"instance index {index} is outside 0..{instances - 1}")
    per_instance = total // instances
    start = first + index * per_instance
    end = start + per_instance - 1
    return str(start) if start == end else f"{start}-{end}"


def neuron_core_blocks(deployment: Deployment, layout: Layout | None = None) -> dict[str, tuple[int, int]]:
    """First and last NeuronCore of each stub model's block; blocks are disjoint and follow each other. The config
    generator hands the layout it resolved; the plan and the notes, which have only the deployment, resolve it."""
    blocks, start = {}, 0
    for name in (layout or layout_of(deployment)).python_models:
        size = deployment.instances_of(name) * deployment.neuron_cores_per_instance
        blocks[name] = (start, start + size - 1)
        start += size
    return blocks


def neuron_cores_needed(deployment: Deployment) -> int:
    return sum(last - first + 1 for first, last in neuron_core_blocks(deployment).values())


@dataclass(frozen=True)
class NeuronTarget(Target):
    name = "neuron"
    # The model places itself: each instance reserves its NeuronCores through NEURON_RT_VISIBLE_CORES.
    instance_kind = "KIND_MODEL"
    always_static = True
    # The default compiler arguments cast matrix multiplications to fp16: about half an fp32 weight byte each.
    device_weight_scale = 0.5
    device_memory_note = (
        "the estimate counts each NEFF's weights, assumed stored at fp16 (no Neuron document states it), and each "
        "NEFF's input and output tensors at its bucket shape; the compiler's scratchpad (intermediate activations) "
        "and the runtime's host memory for loaded NEFFs are not counted: unknown until measured with neuron-top on "
        "an inf2 host"
    )

    @classmethod
    def resolve(cls, *, fp16: bool = False, compiler_args: str | None = None, static_shapes: bool = False) -> Target:
        check_release(installed_sdk())
        args = shlex.split(compiler_args if compiler_args is not None else DEFAULT_NEURON_COMPILER_ARGS)
        # neuronx-cc casts inside the compiler; the module itself is traced in fp32.
        return cls(precision="fp16" if "fp16" in args else "fp32", compiler_args=tuple(args), static_shapes=True)

    @property
    def tolerance(self) -> float:
        return 5e-2

    @property
    def runs_here(self) -> bool:
        # The Neuron driver's device nodes: without one, NEFFs are compiled (cpu_backend) but cannot be run.
        return any(Path("/dev").glob("neuron[0-9]*"))

    def trace(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> Any:
        args = list(self.compiler_args)
        if not self.runs_here:
            # A build host without Inferentia (the SDK's CPU compilation): trace on the CPU, compile for inf2.
            if "--target" not in args:
                args += ["--target", "inf2"]
            return require_neuron_sdk().trace(module, example_inputs, compiler_args=args, cpu_backend=True)
        return require_neuron_sdk().trace(module, example_inputs, compiler_args=args)

    def deployment_note(self, deployment: Deployment) -> str | None:
        return (
            f"neuron ({deployment.layout} layout): {neuron_cores_needed(deployment)} NeuronCores needed "
            f"({deployment.neuron_cores_per_instance} per instance); blocks {neuron_core_blocks(deployment)}"
        )

    def load(self, path: str, device: str) -> Any:
        import torch

        require_neuron_sdk()  # registers the Neuron ops before the TorchScript module is read
        module = torch.jit.load(path)
        module.eval()
        return module

    def prepare_instance(
        self, parameters: StubParameters, instances: int, index: int, device_id: int
    ) -> InstanceDevice:
        # Before torch_neuronx is imported and the NEFF loaded: the runtime reserves cores at that point.
        start, end = parameters.neuron_core_start_index, parameters.neuron_core_end_index
        if start is None or end is None:
            raise ArtifactError(
                "a neuron stub's config names no NeuronCore block: regenerate with make build-artifacts"
            )
        cores = neuron_visible_cores(start, end, instances, index)
        # A Neuron device plugin exports the cores it allocated to the container: the plan's cores are positions in
        # that list. Only where nothing was allocated (one pod per host, or docker run) are they the host's own.
        allocated = allocation()
        if allocated:
            cores = within_allocation(cores, allocated)
        os.environ[NEURON_VISIBLE_CORES_ENV] = cores
        # Inputs stay on the host; the Neuron runtime moves them to the cores.
        return InstanceDevice(load_device="cpu", description=f"neuron cores {cores}")

    def sdk_versions(self) -> dict[str, str]:
        return installed_sdk()

    def check_build(self, versions: Mapping[str, str]) -> None:
        # NEFFs on a volume can outlive an image upgrade: the runtime must be the release that compiled them.
        installed = installed_sdk()
        built = {name: versions.get(name, "unknown") for name in installed}
        if built != installed:
            raise ArtifactError(
                f"these NEFFs were compiled by {_described(built)}; this image has {_described(installed)}: rebuild "
                "them with `make build-artifacts TARGET=neuron` on this release"
            )

    def process_slots(self, host: HostType) -> int | None:
        # A NeuronCore reserved by one process cannot be used by another: one process per core at most.
        return host.neuron_cores or 0

    def config_parameters(self, deployment: Deployment, layout: Layout, component: str) -> dict[str, Any]:
        start, end = neuron_core_blocks(deployment, layout)[component]
        return {"neuron_core_start_index": start, "neuron_core_end_index": end}

    def visible_cores(self, deployment: Deployment) -> dict[str, list[str]] | None:
        return {
            name: [
                neuron_visible_cores(first, last, deployment.instances_of(name), i)
                for i in range(deployment.instances_of(name))
            ]
            for name, (first, last) in neuron_core_blocks(deployment).items()
        }
