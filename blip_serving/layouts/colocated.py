"""LAYOUT=colocated: ``blip_vqa`` is one Python-backend model; each instance runs the three components in its process.

One process per NeuronCore, as the Neuron SDK's multi-part samples keep a pipeline: on a 2-core inf2.xlarge, two
instances, each holding the three NEFF sets on its own core. On a GPU it is one CUDA context per instance instead of
three. Requests of one ``execute`` call share one image-encoder batch and one decoder batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blip_serving.layouts.base import ConfigBuilder, Context, Layout, Option
from blip_serving.spec import PIXEL_MODEL, PUBLIC_MODEL

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as pb


class ColocatedLayout(Layout):
    name = "colocated"
    served_models = (PUBLIC_MODEL, PIXEL_MODEL)
    python_models = (PUBLIC_MODEL,)
    summary = (
        "blip_vqa is one Python-backend model; each instance runs image encoder, text encoder and decoder "
        "(blip_vqa_pixels: a one-step ensemble over it)"
    )

    def config_name(self, target: str) -> str:
        return f"{self.name}-{target}"

    def placement(self, context: Context) -> Option:
        need = sum(context.device_mib.values())
        if context.slots is None:
            option = context.option(self, {PUBLIC_MODEL: 1}, None, need + context.runtime_mib)
            option.notes.append(
                "one process instead of three: one runtime context (on gpu a CUDA context) and one copy of the Python "
                "and torch overhead instead of three, no competing OpenMP teams"
            )
            return option
        option = context.option(self, {PUBLIC_MODEL: context.slots}, float(context.slots), need)
        option.notes.append(f"{context.slots} instance(s), one NeuronCore each, every core holding all three NEFF sets")
        return option

    def configs(self, build: ConfigBuilder) -> dict[str, pb.ModelConfig]:
        # The pixel form: Triton's ensembles take no optional inputs, so one step over blip_vqa sends it PIXELS.
        return {
            PUBLIC_MODEL: build.python_model(PUBLIC_MODEL),
            PIXEL_MODEL: build.ensemble(PIXEL_MODEL, (PUBLIC_MODEL,)),
        }
