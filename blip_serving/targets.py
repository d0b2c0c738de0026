"""How each target traces a component and where its artifact runs.

cpu and gpu use ``torch.jit.trace`` (batch, question and answer lengths stay dynamic; the build proves it on
every bucket shape). neuron uses ``torch_neuronx.trace`` as the AWS Neuron documentation gives it, once per
shape bucket, since a NEFF is compiled for one shape. Where the SDK or CUDA is missing the build stops at once,
before anything is written.
"""

from __future__ import annotations

import importlib
import shlex
from dataclasses import dataclass
from typing import Any

import torch

from blip_serving.errors import TargetUnavailableError
from blip_serving.spec import TARGETS

DEFAULT_NEURON_COMPILER_ARGS = "--auto-cast matmult --auto-cast-type fp16"


@dataclass(frozen=True)
class TargetConfig:
    """What a build for one target needs: the device, the precision, and the tracer's settings."""

    name: str
    device: str
    precision: str = "fp32"
    compiler_args: tuple[str, ...] = ()
    # One artifact per shape bucket (a NEFF has one shape); cpu can build this way to run the same padding.
    static_shapes: bool = False

    @property
    def float_dtype(self) -> torch.dtype:
        """The dtype the module runs in: fp16 on GPU when asked; Neuron casts inside its compiler instead."""
        return torch.float16 if self.name == "gpu" and self.precision == "fp16" else torch.float32

    @property
    def tolerance(self) -> float:
        """Largest error of the reloaded artifact against the original module, relative to the output's range."""
        if self.name == "neuron":
            return 5e-2
        return 2e-2 if self.precision == "fp16" else 1e-4

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "device": self.device,
            "precision": self.precision,
            "compiler_args": list(self.compiler_args),
            "static_shapes": self.static_shapes,
        }


def resolve_target(
    name: str, *, fp16: bool = False, compiler_args: str | None = None, static_shapes: bool = False
) -> TargetConfig:
    """Check the target can run here and describe it; raise ``TargetUnavailableError`` with one clear line."""
    if name not in TARGETS:
        raise TargetUnavailableError(f"unknown TARGET={name!r}; expected one of {', '.join(TARGETS)}")
    if name == "cpu":
        if fp16:
            raise TargetUnavailableError("TARGET=cpu runs fp32 only; fp16 is for TARGET=gpu")
        return TargetConfig(name="cpu", device="cpu", static_shapes=static_shapes)
    if name == "gpu":
        if not torch.cuda.is_available():
            raise TargetUnavailableError(
                "TARGET=gpu needs CUDA, and torch.cuda.is_available() is False on this machine "
                f"(torch {torch.__version__})"
            )
        return TargetConfig(
            name="gpu", device="cuda", precision="fp16" if fp16 else "fp32", static_shapes=static_shapes
        )
    require_neuron_sdk()
    args = shlex.split(compiler_args if compiler_args is not None else DEFAULT_NEURON_COMPILER_ARGS)
    precision = "fp16" if "fp16" in args else "fp32"
    return TargetConfig(
        name="neuron",
        device="cpu",
        precision=precision,
        compiler_args=tuple(args),
        static_shapes=True,
    )


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


NEURON_VISIBLE_CORES_ENV = "NEURON_RT_VISIBLE_CORES"


def instance_index(instance_name: str) -> int:
    """The index of a Triton model instance, from its name ``<model>_<group>_<index>``."""
    last = instance_name.rsplit("_", 1)[-1]
    if not last.isdigit():
        raise ValueError(f"model instance name {instance_name!r} does not end with _<index>")
    return int(last)


def neuron_visible_cores(first: int, last: int, instances: int, index: int) -> str:
    """``NEURON_RT_VISIBLE_CORES`` for instance ``index`` of a component that owns cores ``first..last``.

    The block is split evenly in instance order, as python_backend's ``inferentia/`` generator does. A process
    that set nothing would reserve every core of the machine and starve the other instances and components.
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


def trace(target: TargetConfig, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> Any:
    """Trace one component for ``target``; inputs are already on the target's device and dtype."""
    if target.name == "neuron":
        torch_neuronx = require_neuron_sdk()
        return torch_neuronx.trace(module, example_inputs, compiler_args=list(target.compiler_args))
    with torch.no_grad():
        return torch.jit.trace(module, example_inputs, check_trace=False)


def load_artifact(target_name: str, path: str, device: str) -> Any:
    """Load a saved artifact; for neuron, torch_neuronx must be imported first to register its ops."""
    if target_name == "neuron":
        require_neuron_sdk()
    module = torch.jit.load(path, map_location=device if target_name != "neuron" else None)
    module.eval()
    return module
