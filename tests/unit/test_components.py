"""Traced components and the greedy loop, in-process: the split model answers and scores exactly as ``generate``."""

from __future__ import annotations

import json

import pytest
import torch

from blip_serving.errors import ArtifactError
from blip_serving.manifest import MANIFEST, read_manifest
from blip_serving.spec import IMAGE_ENCODER, TEXT_DECODER, TEXT_ENCODER
from blip_serving.stub.generation import first_step, greedy_decode, yes_probability
from blip_serving.stub.questions import CheckpointTokenizer, QuestionTokenizer
from blip_serving.stub.runners import ImageEncoderRunner, TextDecoderRunner, TextEncoderRunner
from blip_serving.targets.cpu import CpuTarget
from tests.conftest import QUESTIONS, VALID_IMAGES


@pytest.fixture(scope="module")
def manifest(tiny_build):
    return read_manifest(tiny_build.target_dir())


def _runner(manifest, component, cls):
    files = manifest.artifact_files(component)
    artifacts = [(sizes, CpuTarget().load(str(path), "cpu")) for sizes, path in files]
    return cls.from_artifacts(artifacts, manifest.spec.components[component], "cpu")


def _decoder(manifest, policy: str) -> TextDecoderRunner:
    return _runner(manifest, TEXT_DECODER, TextDecoderRunner).configure(manifest.spec.decode_lengths, policy)


def test_manifest_describes_the_build(manifest, tiny_build) -> None:
    record = manifest.record
    assert record.target.name == "cpu" and manifest.checkpoint_location == str(tiny_build.checkpoint.resolve())
    assert set(record.components) == {"image_encoder", "text_encoder", "text_decoder"}
    for entry in record.components.values():
        ((file,),) = [entry.files]
        assert file.sizes == {} and len(file.sha256) == 64 and entry.max_relative_error <= 1e-4
    assert {"torch", "transformers"} <= set(record.versions)


def test_static_build_has_one_artifact_per_bucket(static_build) -> None:
    manifest = read_manifest(static_build.target_dir())
    spec = manifest.spec
    assert [sizes for sizes, _ in manifest.artifact_files(IMAGE_ENCODER)] == [{"batch": b} for b in (1, 4, 8)]
    decoder = manifest.artifact_files(TEXT_DECODER)
    assert len(decoder) == len(spec.question_buckets) * len(spec.decode_lengths) * len(spec.question_batch_buckets)
    assert {tuple(sorted(sizes)) for sizes, _ in decoder} == {("answer_tokens", "batch", "question_tokens")}
    assert len({tuple(sizes.values()) for sizes, _ in decoder}) == len(decoder), "one artifact per bucket"
    for sizes, path in decoder:
        expected = "text_decoder" + "".join(f".{axis}{size}" for axis, size in sorted(sizes.items())) + ".pt"
        assert path.name == expected and path.is_file()


def test_static_shapes_pad_to_buckets_without_changing_a_row(manifest, static_build) -> None:
    """The Neuron path on CPU: chunks of the largest bucket, the rest padded up; rows equal the polymorphic ones."""
    static = read_manifest(static_build.target_dir())
    spec = manifest.spec
    sizes = {"batch": 7, "question_tokens": 16, "frames": 3}  # 4 + 3 questions padded to 4; 3 frames padded to 4
    ids, mask, frames, frame_index = spec.example_inputs(TEXT_ENCODER, sizes, seed=11)
    assert frame_index.tolist() == [0, 0, 0, 1, 1, 2, 2]
    dynamic_encoder = _runner(manifest, TEXT_ENCODER, TextEncoderRunner)
    static_encoder = _runner(static, TEXT_ENCODER, TextEncoderRunner)
    assert static_encoder.static and not dynamic_encoder.static and static_encoder.frame_buckets == (1, 4, 8)
    assert torch.allclose(
        dynamic_encoder.encode(ids, mask, frames, frame_index),
        static_encoder.encode(ids, mask, frames, frame_index),
        atol=1e-5,
    )
    (pixels,) = spec.example_inputs(IMAGE_ENCODER, {"batch": 11}, seed=2)  # 8 + 3 padded to 4
    assert pixels.dtype == torch.uint8 and pixels.shape[1:] == (spec.image_height, spec.image_width, 3)
    dynamic_images = _runner(manifest, IMAGE_ENCODER, ImageEncoderRunner).encode(pixels)
    assert torch.allclose(dynamic_images, _runner(static, IMAGE_ENCODER, ImageEncoderRunner).encode(pixels), atol=1e-5)
    with pytest.raises(RuntimeError, match="no artifact was built for sizes"):
        static_encoder.encode(ids[:, :12], mask[:, :12], frames, frame_index)


def test_text_encoder_runs_several_frames_as_each_alone(manifest) -> None:
    """One call over three frames with 1, 3 and 2 questions equals three calls of one frame each, row for row."""
    spec = manifest.spec
    encoder = _runner(manifest, TEXT_ENCODER, TextEncoderRunner)
    ids, mask, frames, _ = spec.example_inputs(TEXT_ENCODER, {"batch": 6, "question_tokens": 16, "frames": 3}, seed=4)
    frame_index = torch.tensor([0, 1, 1, 1, 2, 2])
    together = encoder.encode(ids, mask, frames, frame_index)
    alone = [
        encoder.encode(ids[rows], mask[rows], frames[frame : frame + 1], torch.zeros(len(rows), dtype=torch.long))
        for frame, rows in enumerate(([0], [1, 2, 3], [4, 5]))
    ]
    assert torch.allclose(together, torch.cat(alone), atol=1e-5)
    assert not torch.allclose(together[0], encoder.encode(ids[:1], mask[:1], frames[1:2], frame_index[:1])[0])


def test_split_pipeline_equals_generate_with_padded_questions(tiny_reference, manifest) -> None:
    """Questions padded to their bucket, decoded together, equal one unpadded generate each; so do the scores."""
    from transformers import BlipProcessor

    spec = manifest.spec
    processor = BlipProcessor.from_pretrained(manifest.processor_dir)
    tokenize = QuestionTokenizer(CheckpointTokenizer(manifest.processor_dir), spec.question_buckets)
    encoder = _runner(manifest, TEXT_ENCODER, TextEncoderRunner)
    decoders = [_decoder(manifest, policy) for policy in ("exact", "bucketed", "fixed")]
    blip = tiny_reference.model
    for path in VALID_IMAGES[:4]:
        pixel_values = processor(images=tiny_reference.image(path), return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            image_embeds = blip.vision_model(pixel_values=pixel_values)[0]
        ids, mask = tokenize(list(QUESTIONS))
        assert ids.shape[1] == 16, "short questions take the 16-token bucket"
        question_embeds = encoder.encode(ids, mask, image_embeds, torch.zeros(len(QUESTIONS), dtype=torch.long))
        expected = [tiny_reference.answer(path, q) for q in QUESTIONS]
        for decoder in decoders:
            tokens = greedy_decode(decoder.next_token_logits, question_embeds, mask, spec)
            assert processor.tokenizer.batch_decode(tokens, skip_special_tokens=True) == expected, decoder.length_policy
        scores = yes_probability(first_step(decoders[0].next_token_logits, question_embeds, mask, spec), spec)
        assert torch.allclose(scores, torch.tensor([tiny_reference.score(path, q) for q in QUESTIONS]), atol=1e-5)


def test_decode_length_policies(manifest, static_build) -> None:
    decoder = _decoder(manifest, "bucketed")
    assert [decoder.buffer_length(p) for p in (0, 1, 3, 4, 19)] == [1, 4, 4, 21, 21]
    assert _decoder(manifest, "exact").buffer_length(5) == 6 and _decoder(manifest, "fixed").buffer_length(0) == 21
    static = read_manifest(static_build.target_dir())
    with pytest.raises(ValueError, match="needs shape-polymorphic artifacts"):
        _decoder(static, "exact")


def test_a_manifest_with_a_field_it_does_not_know_is_refused_naming_it(manifest, tmp_path) -> None:
    """The manifest is a typed record: a field written by another version is named, not silently ignored."""
    data = json.loads((manifest.directory / MANIFEST).read_text())
    data["components"]["text_encoder"]["files"][0]["shard"] = 3
    (tmp_path / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(
        ArtifactError, match=r"components\.text_encoder\.files\.0\.shard: Extra inputs are not permitted"
    ):
        read_manifest(tmp_path)
