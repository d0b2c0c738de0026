"""LAYOUT=colocated: ``blip_vqa`` is one Python-backend model; each instance runs the three components in its process.

One process per NeuronCore, as the Neuron SDK's multi-part samples keep a pipeline: on a 2-core inf2.xlarge, two
instances, each holding the three NEFF sets on its own core. On a GPU it is one CUDA context per instance instead of
three. Requests of one ``execute`` call share one image-encoder batch and one decoder batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blip_serving.deploy.layouts.base import Layout
from blip_serving.spec import ENSEMBLE_NAME

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as pb

    from blip_serving.deploy.placement import Context, Option
    from blip_serving.deploy.triton_config import Deployment
    from blip_serving.spec import BlipSpec


class ColocatedLayout(Layout):
    name = "colocated"
    served_models = (ENSEMBLE_NAME,)
    python_models = (ENSEMBLE_NAME,)
    summary = "blip_vqa is one Python-backend model; each instance runs image encoder, text encoder and decoder"

    def config_name(self, target: str) -> str:
        return f"{self.name}-{target}"

    def placement(self, context: Context) -> Option:
        need = sum(context.device_mib.values())
        if context.slots is None:
            option = context.option(self.name, {ENSEMBLE_NAME: 1}, None, need + context.runtime_mib)
            option.notes.append(
                "one process instead of three: one runtime context (on gpu a CUDA context) and one copy of the Python "
                "and torch overhead instead of three, no competing OpenMP teams"
            )
            return option
        option = context.option(self.name, {ENSEMBLE_NAME: context.slots}, float(context.slots), need)
        option.notes.append(f"{context.slots} instance(s), one NeuronCore each, every core holding all three NEFF sets")
        return option

    def configs(
        self, spec: BlipSpec, target: str, artifact_dir: str, deployment: Deployment
    ) -> dict[str, pb.ModelConfig]:
        from blip_serving.deploy.triton_config import python_model_config

        return {ENSEMBLE_NAME: python_model_config(spec, ENSEMBLE_NAME, target, artifact_dir, deployment)}
