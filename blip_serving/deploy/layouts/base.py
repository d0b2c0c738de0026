"""What a layout is: which Triton models serve ``blip_vqa`` and which of them run in their own stub processes.

``ensemble``: the ensemble and three Python-backend models, one stub process per instance of each. ``colocated``:
``blip_vqa`` itself is one Python-backend model whose every instance runs the three components in its own process
(one NeuronCore or one CUDA context per instance). Both expose the same model, tensors and request parameters, so a
caller cannot tell them apart. Nothing outside ``blip_serving.deploy.layouts`` compares layout names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as pb

    from blip_serving.deploy.placement import Context, Option
    from blip_serving.deploy.triton_config import Deployment
    from blip_serving.spec import BlipSpec


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

    @abstractmethod
    def placement(self, context: Context) -> Option:
        """How this layout would run on the context's host, and what it needs there (``make plan``)."""

    @abstractmethod
    def configs(
        self, spec: BlipSpec, target: str, artifact_dir: str, deployment: Deployment
    ) -> dict[str, pb.ModelConfig]:
        """The config of every served model."""
