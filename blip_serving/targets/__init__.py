"""The registry of targets: a name (``TARGET=...``) to the one module that implements it.

Adding a target (ROCm, AWS Trainium, ...) is one module implementing ``blip_serving.targets.base.Target`` plus one
line here; builds, configs, the stub and the server then take it by name.
"""

from __future__ import annotations

from blip_serving.errors import TargetUnavailableError
from blip_serving.targets.base import InstanceDevice, Target
from blip_serving.targets.cpu import CpuTarget
from blip_serving.targets.gpu import GpuTarget
from blip_serving.targets.neuron import NeuronTarget

TARGETS: dict[str, type[Target]] = {target.name: target for target in (CpuTarget, GpuTarget, NeuronTarget)}
TARGET_NAMES: tuple[str, ...] = tuple(TARGETS)

__all__ = ["TARGETS", "TARGET_NAMES", "InstanceDevice", "Target", "get_target", "resolve_target"]


def get_target(name: str) -> type[Target]:
    """The target class registered as ``name``, or ``TargetUnavailableError`` naming the known ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise TargetUnavailableError(f"unknown TARGET={name!r}; expected one of {', '.join(TARGET_NAMES)}") from None


def resolve_target(
    name: str, *, fp16: bool = False, compiler_args: str | None = None, static_shapes: bool = False
) -> Target:
    """Check ``name`` can build here and fix its settings; raise ``TargetUnavailableError`` with one clear line."""
    return get_target(name).resolve(fp16=fp16, compiler_args=compiler_args, static_shapes=static_shapes)
