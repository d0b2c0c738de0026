"""The spec reads every size from the checkpoint's config and drives the Triton configs."""

from __future__ import annotations

import pytest
import torch
from transformers import BlipConfig
from tritonclient.grpc import model_config_pb2 as pb

from blip_contract.pixels import PIXEL_SETTINGS, PixelSettings
from blip_serving import spec as names
from blip_serving.deployment import Deployment
from blip_serving.model_config import ensemble_config, parse, python_model_config, render
from blip_serving.spec import BlipSpec, batch_chunks

# blip-vqa-base's tokenizer (bert-base-uncased): "yes" and "no".
YES_NO = {"yes_token_id": 2748, "no_token_id": 2053}


def base_spec(config=None, **kwargs) -> BlipSpec:
    return BlipSpec.from_model_config(config or BlipConfig(), **({"max_length": 21} | YES_NO | kwargs))


def test_base_config_gives_blip_vqa_base_shapes() -> None:
    spec = base_spec()
    assert (spec.image_height, spec.image_width, spec.image_tokens) == (384, 384, 577)
    assert (spec.vision_hidden_size, spec.text_hidden_size, spec.vocab_size) == (768, 768, 30524)
    assert (spec.bos_token_id, spec.sep_token_id, spec.pad_token_id) == (30522, 102, 0)
    assert spec.components[names.IMAGE_ENCODER].outputs[0].dims == (577, 768)


def test_sizes_follow_a_non_default_checkpoint() -> None:
    config = BlipConfig(
        vision_config={"image_size": 96, "patch_size": 8, "hidden_size": 40, "num_attention_heads": 4},
        text_config={"hidden_size": 24, "num_attention_heads": 4, "vocab_size": 500},
    )
    spec = base_spec(config, max_length=9, question_buckets=(8, 40))
    assert spec.image_tokens == (96 // 8) ** 2 + 1
    assert spec.components[names.TEXT_ENCODER].inputs[1].dims == (spec.image_tokens, 40)
    assert spec.components[names.TEXT_DECODER].inputs[0].dims == (-1, -1, 24)
    assert spec.components[names.TEXT_DECODER].traced_outputs[0].dims == (-1, 500)
    assert spec.decode_lengths == (1, 4, 9) and spec.question_tokens == 40
    assert (spec.question_bucket(8), spec.question_bucket(9)) == (8, 40)


def test_limits_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="question_buckets must be distinct positive sizes in ascending order"):
        base_spec(question_buckets=(32, 16))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        base_spec(max_length=600)
    with pytest.raises(ValueError, match="yes_token_id and no_token_id are both 7"):
        base_spec(yes_token_id=7, no_token_id=7)
    with pytest.raises(ValueError, match="40 question tokens exceed the largest bucket 32"):
        base_spec().question_bucket(40)


def test_spec_round_trips_through_the_manifest_dict() -> None:
    spec = base_spec(max_questions=7, image_batch_buckets=(1, 2))
    assert BlipSpec.from_dict(spec.to_dict()) == spec


def test_example_inputs_have_the_traced_shapes_and_ragged_masks() -> None:
    spec = base_spec()
    sizes = {"batch": 5, "question_tokens": 16, "frames": 2}
    ids, mask, frames, frame_index = spec.example_inputs(names.TEXT_ENCODER, sizes, seed=3)
    assert ids.shape == mask.shape == (5, 16) and frames.shape == (2, 577, 768)
    assert frame_index.tolist() == [0, 0, 0, 1, 1], "questions grouped by frame, every frame used"
    (pixels,) = spec.example_inputs(names.IMAGE_ENCODER, {"batch": 3}, seed=3)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 384, 384, 3)
    assert 0 < int(mask.sum()) < mask.numel(), "masks must contain real padding"
    tokens, position, embeds, _ = spec.example_inputs(names.TEXT_DECODER, {"answer_tokens": 1}, seed=3)
    assert tokens.shape == (2, 1) and int(position) == 0 and embeds.shape == (2, 32, 768)


def test_shape_buckets_name_every_static_artifact() -> None:
    decoder = base_spec().components[names.TEXT_DECODER]
    # question-batch buckets (4, 16) x question-length buckets x decode lengths
    assert len(decoder.shape_buckets) == 2 * 2 * 3
    assert sorted({sizes["batch"] for sizes in decoder.shape_buckets}) == [4, 16]
    assert decoder.artifact_name({"batch": 4, "question_tokens": 16, "answer_tokens": 1}) == (
        "text_decoder.answer_tokens1.batch4.question_tokens16.pt"
    )
    assert decoder.artifact_name() == "text_decoder.pt"


@pytest.mark.parametrize("model", [names.IMAGE_ENCODER, names.TEXT_ENCODER, names.TEXT_DECODER, names.PUBLIC_MODEL])
def test_every_python_model_batches_frames_with_the_dynamic_batcher(model) -> None:
    """One frame a request, up to the largest frame bucket per execute; inputs whose sizes vary are ragged."""
    spec = base_spec()
    deployment = Deployment(max_queue_delay_us=0, step_queue_delay_us=3000)
    # Steps fed by another step (the ensemble's text encoder and decoder) wait to gather its batch again.
    fed = model in (names.TEXT_ENCODER, names.TEXT_DECODER)
    config = python_model_config(spec, model, "cpu", "x", deployment)
    assert config.max_batch_size == 8
    # Preferred sizes where artifacts have a static batch (neuron) or the batcher waits (they end the wait early);
    # a model that takes whatever is queued would only be made to cut its batch.
    assert list(config.dynamic_batching.preferred_batch_size) == ([4, 8] if fed else [])
    served_by = "colocated" if model == names.PUBLIC_MODEL else "ensemble"  # the layout running it as a stub
    neuron = python_model_config(spec, model, "neuron", "x", deployment.replaced(layout=served_by))
    assert list(neuron.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == (3000 if fed else 0)
    assert config.parameters["stub_processes"].string_value == "3"
    colocated = python_model_config(spec, names.PUBLIC_MODEL, "cpu", "x", deployment.replaced(layout="colocated"))
    assert colocated.dynamic_batching.max_queue_delay_microseconds == 0
    waiting = python_model_config(spec, names.PUBLIC_MODEL, "cpu", "x", Deployment(layout="colocated"))
    # By default a model that callers feed waits too (4 ms), and a preferred size ends its wait early.
    assert waiting.dynamic_batching.max_queue_delay_microseconds == 4000
    assert list(waiting.dynamic_batching.preferred_batch_size) == [4, 8]
    assert colocated.parameters["stub_processes"].string_value == "1"
    ragged = {tensor.name for tensor in config.input if tensor.allow_ragged_batch}
    assert ragged == {tensor.name for tensor in config.input if -1 in tensor.dims}
    assert ragged <= {"QUESTIONS", "QUESTION_EMBEDS", "QUESTION_MASK"} and (ragged or model == names.IMAGE_ENCODER)


def test_the_ensemble_batches_frames_as_its_steps_do() -> None:
    assert ensemble_config(base_spec(), names.PUBLIC_MODEL, names.COMPONENT_NAMES).max_batch_size == 8


def test_pixel_normalization_reaches_the_spec_and_is_checked() -> None:
    spec = base_spec(pixel_normalization=(1 / 255, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0)))
    assert (spec.pixel_mean, spec.pixel_std) == ((0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert BlipSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="pixel_mean has 2 values for 3 channels"):
        base_spec(pixel_normalization=(1 / 255, (0.5, 0.5), (1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="pixel_std has a zero"):
        base_spec(pixel_normalization=(1 / 255, (0.5,) * 3, (1.0, 0.0, 1.0)))
    assert (
        python_model_config(spec, names.TEXT_ENCODER, "gpu", "x")
        .parameters["FORCE_CPU_ONLY_INPUT_TENSORS"]
        .string_value
        == "no"
    )


# What each step hands the next, written out by hand: a dtype the generator gets wrong fails here, not at load.
WIRE_DTYPES = {
    names.IMAGE_ENCODER: ({"IMAGE": "TYPE_STRING", "PIXELS": "TYPE_UINT8"}, {"IMAGE_EMBEDS": "TYPE_FP32"}),
    names.TEXT_ENCODER: (
        {"QUESTIONS": "TYPE_STRING", "IMAGE_EMBEDS": "TYPE_FP32"},
        {"QUESTION_EMBEDS": "TYPE_FP32", "QUESTION_MASK": "TYPE_INT64"},
    ),
    names.TEXT_DECODER: (
        {"QUESTION_EMBEDS": "TYPE_FP32", "QUESTION_MASK": "TYPE_INT64"},
        {"ANSWERS": "TYPE_STRING", "SCORES": "TYPE_FP32"},
    ),
}


def _dtypes(tensors) -> dict[str, str]:
    return {t.name: pb.DataType.Name(t.data_type) for t in tensors}


@pytest.mark.parametrize("target", ["cpu", "gpu", "neuron"])
def test_python_model_configs_carry_the_spec_for_every_target(target: str) -> None:
    spec = base_spec()
    for name, component in spec.components.items():
        config = parse(render(python_model_config(spec, name, target, "../artifacts/" + target)))
        assert config.name == name and config.backend == "python"
        assert [(t.name, list(t.dims)) for t in config.input] == [(t.name, list(t.dims)) for t in component.inputs]
        assert [(t.name, list(t.dims)) for t in config.output] == [(t.name, list(t.dims)) for t in component.outputs]
        assert (_dtypes(config.input), _dtypes(config.output)) == WIRE_DTYPES[name], name
        assert config.parameters["target"].string_value == target


def test_ensemble_chains_the_three_steps_by_name() -> None:
    spec = base_spec()
    config = ensemble_config(spec, names.PUBLIC_MODEL, names.COMPONENT_NAMES)
    assert [t.name for t in config.input] == [names.IMAGE, names.QUESTIONS]
    assert [(t.name, list(t.dims)) for t in config.output] == [(names.ANSWERS, [-1]), (names.SCORES, [-1])]
    assert _dtypes(config.input) == {names.IMAGE: "TYPE_STRING", names.QUESTIONS: "TYPE_STRING"}
    assert _dtypes(config.output) == {names.ANSWERS: "TYPE_STRING", names.SCORES: "TYPE_FP32"}
    produced = {names.IMAGE, names.QUESTIONS}
    for step in config.ensemble_scheduling.step:
        assert set(step.input_map.values()) <= produced, f"{step.model_name} reads a tensor nobody produced"
        produced |= set(step.output_map.values())
    assert {names.ANSWERS, names.SCORES} <= produced
    assert dict(config.ensemble_scheduling.step[0].input_map) == {names.IMAGE: names.IMAGE}, "not the other form"
    assert not config.parameters, "the encoded form carries no pixel settings"


def test_the_pixel_ensembles_send_pixels_and_carry_the_fleets_pixel_settings() -> None:
    spec = base_spec(pixel_resize=(2, False))
    for steps in (names.COMPONENT_NAMES, (names.PUBLIC_MODEL,)):  # the ensemble layout's, the colocated one's
        config = ensemble_config(spec, names.PIXEL_MODEL, steps, fast_resize=True)
        assert [(t.name, list(t.dims)) for t in config.input] == [
            (names.PIXELS, [spec.image_height, spec.image_width, 3]),
            (names.QUESTIONS, [-1]),
        ]
        assert _dtypes(config.input) == {names.PIXELS: "TYPE_UINT8", names.QUESTIONS: "TYPE_STRING"}
        assert not any(t.optional for t in config.input), "Triton's ensembles take no optional inputs"
        assert config.ensemble_scheduling.step[0].input_map[names.PIXELS] == names.PIXELS
        assert names.IMAGE not in config.ensemble_scheduling.step[0].input_map
        settings = PixelSettings.from_parameter(config.parameters[PIXEL_SETTINGS].string_value, "test")
        assert settings == spec.pixel_settings(fast=True)
        assert (settings.resample, settings.convert_rgb, settings.fast, settings.shape) == (
            2,
            False,
            True,
            (384, 384, 3),
        )
    with pytest.raises(ValueError, match=r"^blip_vqa_pixels: nothing feeds text_encoder's input IMAGE_EMBEDS$"):
        ensemble_config(spec, names.PIXEL_MODEL, (names.TEXT_ENCODER,))


def test_the_frame_forms_are_optional_inputs_of_the_python_models() -> None:
    spec = base_spec()
    for model in (names.IMAGE_ENCODER, names.PUBLIC_MODEL):
        config = python_model_config(spec, model, "cpu", "../artifacts/cpu")
        optional = {t.name for t in config.input if t.optional}
        assert optional == {names.IMAGE, names.PIXELS}, model
    assert not any(t.optional for t in python_model_config(spec, names.TEXT_ENCODER, "cpu", "a").input)


def test_a_static_build_runs_questions_in_chunks_of_its_largest_bucket_padding_only_the_last() -> None:
    assert batch_chunks((4, 16), 3) == [(3, 4)]
    assert batch_chunks((4, 16), 12) == [(12, 16)]
    assert batch_chunks((4, 16), 24) == [(16, 16), (8, 16)]
    assert batch_chunks((4,), 24) == [(4, 4)] * 6
    assert batch_chunks((4, 12, 24), 16) == [(16, 24)]
    assert batch_chunks((4, 16), 0) == []
