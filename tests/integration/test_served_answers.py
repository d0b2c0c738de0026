"""Served answers equal transformers' own ``generate`` on the saved checkpoint, image by image."""

from __future__ import annotations

from pathlib import Path

import pytest

from blip_client.client import BlipVqaClient
from blip_serving.server import TritonServer
from tests.conftest import QUESTIONS, VALID_IMAGES, Reference, make_build


@pytest.mark.parametrize("path", VALID_IMAGES, ids=lambda p: p.name)
def test_every_valid_image_answers_as_transformers(path: Path, client, tiny_reference) -> None:
    answers = client.ask(path.read_bytes(), QUESTIONS)
    assert answers == [tiny_reference.answer(path, q) for q in QUESTIONS]


def test_answers_vary_with_image_and_question(client) -> None:
    """Guards the parity test itself: a model that ignored its inputs would pass it vacuously."""
    answers = {a for path in VALID_IMAGES for a in client.ask(path.read_bytes(), QUESTIONS)}
    assert len(answers) >= len(VALID_IMAGES)


def test_one_question_alone_equals_it_among_others(client) -> None:
    image = VALID_IMAGES[0].read_bytes()
    together = client.ask(image, QUESTIONS)
    assert [client.ask(image, [q])[0] for q in QUESTIONS] == together


def test_grpc_gives_the_same_answers(triton, client) -> None:
    image = VALID_IMAGES[-1].read_bytes()
    with BlipVqaClient(triton.grpc_url, protocol="grpc") as grpc_client:
        assert grpc_client.ask(image, QUESTIONS) == client.ask(image, QUESTIONS)


def _odd_sized_checkpoint(directory: Path) -> Path:
    """A checkpoint with sizes unlike any default: 48 px, patch 8 (37 tokens), width 40, 3 layers, 40-token bucket.

    (BLIP VQA needs the text width equal to the vision width: the decoder cross-attends through it.)
    """
    import torch
    from transformers import BlipConfig, BlipForQuestionAnswering, BlipImageProcessorPil, BlipProcessor

    from blip_serving.checkpoints import make_tokenizer, tokenizer_text_config

    tokenizer = make_tokenizer()
    text = dict(
        **tokenizer_text_config(tokenizer),
        hidden_size=40,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        initializer_range=0.3,
        max_position_embeddings=64,
    )
    vision = dict(
        hidden_size=40,
        intermediate_size=80,
        num_hidden_layers=3,
        num_attention_heads=5,
        image_size=48,
        patch_size=8,
        initializer_range=0.3,
    )
    torch.manual_seed(7)
    model = BlipForQuestionAnswering(BlipConfig(text_config=text, vision_config=vision)).eval()
    model.save_pretrained(directory)
    image_processor = BlipImageProcessorPil(
        size={"height": 48, "width": 48}, image_mean=[0.5] * 3, image_std=[0.25] * 3
    )
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def test_a_local_checkpoint_with_other_sizes_serves_its_own_answers(tmp_path_factory) -> None:
    root = tmp_path_factory.mktemp("odd")
    checkpoint = _odd_sized_checkpoint(root / "checkpoint")
    build = make_build(root, str(checkpoint), extra=("--question-tokens", "40"))
    reference = Reference(checkpoint)
    with TritonServer(build.repository, "cpu") as server, BlipVqaClient(server.http_url) as odd_client:
        for path in VALID_IMAGES[:3]:
            assert odd_client.ask(path.read_bytes(), QUESTIONS) == [reference.answer(path, q) for q in QUESTIONS]
