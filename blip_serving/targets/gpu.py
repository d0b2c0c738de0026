"""TARGET=gpu: ``torch.jit.trace`` on CUDA (fp32, or fp16 with FP16=1), KIND_GPU instances on their own GPU.

Tensors between the ensemble's steps stay on the device: the configs turn off Triton's copy to CPU and the
models read and write them through DLPack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from blip_serving.errors import TargetUnavailableError
from blip_serving.targets.base import Target

if TYPE_CHECKING:
    import torch

    from blip_serving.deployment import Deployment
    from blip_serving.layouts import Layout


def require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise TargetUnavailableError(
            f"TARGET=gpu needs CUDA, and torch.cuda.is_available() is False on this machine (torch {torch.__version__})"
        )


@dataclass(frozen=True)
class GpuTarget(Target):
    name = "gpu"
    instance_kind = "KIND_GPU"
    build_device = "cuda"
    gpu_metrics = True

    @classmethod
    def resolve(cls, *, fp16: bool = False, compiler_args: str | None = None, static_shapes: bool = False) -> Target:
        require_cuda()
        return cls(precision="fp16" if fp16 else "fp32", static_shapes=static_shapes)

    @property
    def float_dtype(self) -> torch.dtype:
        import torch

        return torch.float16 if self.precision == "fp16" else torch.float32

    def check_serving(self) -> None:
        require_cuda()

    def load_device(self, device_id: int = 0) -> str:
        return f"cuda:{device_id}"

    def config_parameters(self, deployment: Deployment, layout: Layout, component: str) -> dict[str, Any]:
        if deployment.host_step_tensors:
            return {"force_cpu_only_input_tensors": True, "host_outputs": True}
        # Let tensors between the steps stay on the GPU; the models read them through DLPack.
        return {"force_cpu_only_input_tensors": False}
