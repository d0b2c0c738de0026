"""TARGET=cpu: ``torch.jit.trace`` in fp32, instances of KIND_CPU, artifacts loaded on the CPU."""

from __future__ import annotations

from dataclasses import dataclass

from blip_serving.errors import TargetUnavailableError
from blip_serving.targets.base import Target


@dataclass(frozen=True)
class CpuTarget(Target):
    name = "cpu"
    instance_kind = "KIND_CPU"
    weights_on_host = True

    @classmethod
    def resolve(cls, *, fp16: bool = False, compiler_args: str | None = None, static_shapes: bool = False) -> Target:
        if fp16:
            raise TargetUnavailableError("TARGET=cpu runs fp32 only; fp16 is for TARGET=gpu")
        return cls(static_shapes=static_shapes)
