"""Traced components and the greedy loop, in-process: the split model answers exactly as ``generate``."""

from __future__ import annotations

import pytest
import torch

from blip_serving.artifacts import read_manifest
from blip_serving.components import TextDecoderWrapper, TextEncoderWrapper
from blip_serving.generation import greedy_decode
from blip_serving.spec import TEXT_DECODER, TEXT_ENCODER
from blip_serving.targets import load_artifact
from tests.conftest import QUESTIONS, VALID_IMAGES


@pytest.fixture(scope="module")
def manifest(tiny_build):
    return read_manifest(tiny_build.target_dir())


def _wrapper(manifest, component, cls, static_batch=None):
    spec = manifest.spec
    module = load_artifact("cpu", str(manifest.artifact_path(component)), "cpu")
    return cls.from_model(module, spec.components[component], "cpu", static_batch=static_batch)


def test_manifest_describes_the_build(manifest, tiny_build) -> None:
    data = manifest.data
    assert data["target"]["name"] == "cpu" and data["saved_checkpoint"] == str(tiny_build.checkpoint.resolve())
    assert set(data["components"]) == {"image_encoder", "text_encoder", "text_decoder"}
    for entry in data["components"].values():
        assert len(entry["sha256"]) == 64 and entry["max_relative_error"] <= 1e-4
    assert {"torch", "transformers"} <= set(data["versions"])


def test_static_batch_chunks_and_pads_to_the_same_answer(manifest) -> None:
    """The Neuron path (static batch) is exercised on CPU: chunking and padding must not change a row."""
    spec = manifest.spec
    dynamic = _wrapper(manifest, TEXT_ENCODER, TextEncoderWrapper)
    static = _wrapper(manifest, TEXT_ENCODER, TextEncoderWrapper, static_batch=4)
    ids, mask, image = spec.example_inputs(TEXT_ENCODER, batch=7, seed=11)
    assert torch.allclose(dynamic.encode(ids, mask, image[0]), static.encode(ids, mask, image[0]), atol=1e-6)


def test_split_pipeline_equals_generate_with_padded_questions(tiny_build, tiny_reference, manifest) -> None:
    """Questions of different lengths padded to the bucket, decoded together, equal one unpadded generate each."""
    from transformers import BlipProcessor

    spec = manifest.spec
    processor = BlipProcessor.from_pretrained(manifest.processor_dir)
    encoder = _wrapper(manifest, TEXT_ENCODER, TextEncoderWrapper)
    decoder = _wrapper(manifest, TEXT_DECODER, TextDecoderWrapper)
    blip = tiny_reference.model
    for path in VALID_IMAGES[:4]:
        pixel_values = processor(images=tiny_reference.image(path), return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            image_embeds = blip.vision_model(pixel_values=pixel_values)[0]
        padded = processor.tokenizer(
            list(QUESTIONS), padding="max_length", max_length=spec.question_tokens, return_tensors="pt"
        )
        question_embeds = encoder.encode(padded["input_ids"], padded["attention_mask"], image_embeds[0])
        tokens = greedy_decode(decoder.next_token_logits, question_embeds, padded["attention_mask"], spec)
        answers = processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        assert answers == [tiny_reference.answer(path, q) for q in QUESTIONS], path.name
