"""The spec reads every size from the checkpoint's config and drives the Triton configs."""

from __future__ import annotations

import pytest
from transformers import BlipConfig

from blip_serving import spec as names
from blip_serving.spec import BlipSpec
from blip_serving.triton_config import component_config, ensemble_config, parse, render


def test_base_config_gives_blip_vqa_base_shapes() -> None:
    spec = BlipSpec.from_model_config(BlipConfig(), max_length=21)
    assert (spec.image_height, spec.image_width, spec.image_tokens) == (384, 384, 577)
    assert (spec.vision_hidden_size, spec.text_hidden_size, spec.vocab_size) == (768, 768, 30524)
    assert (spec.bos_token_id, spec.sep_token_id, spec.pad_token_id) == (30522, 102, 0)
    assert spec.components[names.IMAGE_ENCODER].outputs[0].dims == (577, 768)


def test_sizes_follow_a_non_default_checkpoint() -> None:
    config = BlipConfig(
        vision_config={"image_size": 96, "patch_size": 8, "hidden_size": 40, "num_attention_heads": 4},
        text_config={"hidden_size": 24, "num_attention_heads": 4, "vocab_size": 500},
    )
    spec = BlipSpec.from_model_config(config, max_length=9, question_tokens=40)
    assert spec.image_tokens == (96 // 8) ** 2 + 1
    assert spec.components[names.TEXT_ENCODER].inputs[1].dims == (spec.image_tokens, 40)
    assert spec.components[names.TEXT_DECODER].inputs[0].dims == (-1, 40, 24)
    assert spec.components[names.TEXT_DECODER].traced_outputs[0].dims == (-1, 500)
    assert spec.components[names.TEXT_DECODER].traced_inputs[0].dims == (-1, 9)


def test_limits_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="question_tokens must be at least 32"):
        BlipSpec.from_model_config(BlipConfig(), max_length=21, question_tokens=16)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        BlipSpec.from_model_config(BlipConfig(), max_length=600)


def test_spec_round_trips_through_the_manifest_dict() -> None:
    spec = BlipSpec.from_model_config(BlipConfig(), max_length=21, max_questions=7)
    assert BlipSpec.from_dict(spec.to_dict()) == spec


def test_example_inputs_have_the_traced_shapes_and_ragged_masks() -> None:
    spec = BlipSpec.from_model_config(BlipConfig(), max_length=21)
    ids, mask, image = spec.example_inputs(names.TEXT_ENCODER, batch=5, seed=3)
    assert ids.shape == mask.shape == (5, 32) and image.shape == (1, 577, 768)
    assert 0 < int(mask.sum()) < mask.numel(), "masks must contain real padding"


@pytest.mark.parametrize("target", ["cpu", "gpu", "neuron"])
def test_component_configs_carry_the_spec_for_every_target(target: str) -> None:
    spec = BlipSpec.from_model_config(BlipConfig(), max_length=21)
    for name, component in spec.components.items():
        config = parse(render(component_config(spec, name, target, "../artifacts/" + target)))
        assert config.name == name and config.backend == "python"
        assert [(t.name, list(t.dims)) for t in config.input] == [(t.name, list(t.dims)) for t in component.inputs]
        assert [(t.name, list(t.dims)) for t in config.output] == [(t.name, list(t.dims)) for t in component.outputs]
        assert config.parameters["target"].string_value == target


def test_ensemble_chains_the_three_steps_by_name() -> None:
    spec = BlipSpec.from_model_config(BlipConfig(), max_length=21)
    config = ensemble_config(spec)
    assert [t.name for t in config.input] == [names.IMAGE, names.QUESTIONS]
    assert [t.name for t in config.output] == [names.ANSWERS]
    produced = {names.IMAGE, names.QUESTIONS}
    for step in config.ensemble_scheduling.step:
        assert set(step.input_map.values()) <= produced, f"{step.model_name} reads a tensor nobody produced"
        produced |= set(step.output_map.values())
    assert names.ANSWERS in produced
