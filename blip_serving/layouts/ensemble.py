"""LAYOUT=ensemble: Triton's ensemble chains three Python-backend models, one stub process per instance of each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blip_serving.layouts.base import ConfigBuilder, Context, Layout, Option, balanced_instances
from blip_serving.spec import COMPONENT_NAMES, PIXEL_MODEL, PUBLIC_MODEL

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as pb


class EnsembleLayout(Layout):
    name = "ensemble"
    served_models = (PUBLIC_MODEL, PIXEL_MODEL, *COMPONENT_NAMES)
    python_models = COMPONENT_NAMES
    fed_models = COMPONENT_NAMES[1:]
    summary = (
        "blip_vqa and blip_vqa_pixels are Triton's ensembles of image_encoder, text_encoder and text_decoder "
        "(a stub process each)"
    )

    def placement(self, context: Context) -> Option:
        ones = dict.fromkeys(COMPONENT_NAMES, 1)
        if context.slots is None:
            # One device shared by three processes, each with its own runtime context.
            need = sum(context.device_mib.values()) + context.runtime_mib * len(COMPONENT_NAMES)
            return context.option(self, ones, None, need)
        if context.slots < len(COMPONENT_NAMES):
            option = context.option(self, ones, None, max(context.device_mib.values()))
            option.refused = (
                f"needs at least {len(COMPONENT_NAMES)} NeuronCores (one process per component, and a NeuronCore "
                f"serves one process); {context.host_name} has {context.slots}"
            )
            return option
        counts = balanced_instances(context.slots, context.share)
        # The slowest stage bounds the pipeline: cores of a stage over its share of a frame's work.
        fps = min(counts[name] / context.share[name] for name in counts)
        option = context.option(self, counts, fps, max(context.device_mib.values()))
        option.notes.append(
            f"cores by stage {counts} (image encoder {context.share[COMPONENT_NAMES[0]]:.0%} of a frame's work)"
        )
        return option

    def configs(self, build: ConfigBuilder) -> dict[str, pb.ModelConfig]:
        configs = {name: build.python_model(name) for name in self.python_models}
        for public in (PUBLIC_MODEL, PIXEL_MODEL):
            configs[public] = build.ensemble(public, COMPONENT_NAMES)
        return configs
