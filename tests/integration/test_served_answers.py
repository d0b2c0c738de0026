"""Served answers and yes/no scores equal transformers' own ``generate`` on the saved checkpoint, image by image."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from blip_client.client import BlipVqaClient
from blip_serving.layouts import LAYOUT_NAMES
from blip_serving.triton.process import TritonServer
from tests.conftest import QUESTIONS, VALID_IMAGES, Reference, make_build


@pytest.mark.parametrize("path", VALID_IMAGES, ids=lambda p: p.name)
def test_every_valid_image_answers_as_transformers(path: Path, client, tiny_reference) -> None:
    answers = client.ask(path.read_bytes(), QUESTIONS)
    assert answers == [tiny_reference.answer(path, q) for q in QUESTIONS]


@pytest.mark.parametrize("path", VALID_IMAGES[:4], ids=lambda p: p.name)
def test_scores_equal_transformers_first_step_in_both_modes(path: Path, client, tiny_reference) -> None:
    image = path.read_bytes()
    expected = [tiny_reference.score(path, q) for q in QUESTIONS]
    both = client.infer(image, QUESTIONS)
    assert both.answers == [tiny_reference.answer(path, q) for q in QUESTIONS]
    assert np.allclose(both.scores, expected, atol=1e-5)
    only = client.infer(image, QUESTIONS, scores_only=True)
    assert only.answers is None and np.allclose(only.scores, expected, atol=1e-5)


def test_scores_vary_and_are_probabilities(client) -> None:
    scores = [s for path in VALID_IMAGES for s in client.scores(path.read_bytes(), QUESTIONS)]
    assert all(0.0 < s < 1.0 for s in scores) and len({round(s, 6) for s in scores}) > len(VALID_IMAGES)


def test_concurrent_frames_batched_in_every_model_keep_their_own_answers(triton, client) -> None:
    """Sixteen frames at once, with 1 to 3 questions each and both modes: every Python model's executes hold several
    requests (Triton's statistics), and each frame still gets exactly its own answers and scores."""
    import tritonclient.grpc as grpc

    cases = [(VALID_IMAGES[i % len(VALID_IMAGES)], QUESTIONS[: 1 + i % 3], i % 2 == 0) for i in range(16)]
    alone = [client.infer(path.read_bytes(), questions, scores_only=only) for path, questions, only in cases]
    stats = grpc.InferenceServerClient(triton.grpc_url)

    def counts() -> dict[str, tuple[int, int]]:
        models = stats.get_inference_statistics(as_json=True)["model_stats"]
        return {m["name"]: (int(m.get("inference_count", 0)), int(m.get("execution_count", 0))) for m in models}

    def ask(case):
        path, questions, only = case
        with BlipVqaClient(triton.grpc_url, protocol="grpc") as own:
            return own.infer(path.read_bytes(), questions, scores_only=only)

    before = counts()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(ask, cases))
    # A step's statistics are recorded after the ensemble has answered: wait (bounded) until all are in.
    deadline = time.monotonic() + 10
    while True:
        after = counts()
        settled = all(after[m][0] - before[m][0] >= len(cases) for m in triton.layout.python_models)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    stats.close()
    for result, expected in zip(results, alone):
        assert result.answers == expected.answers
        assert np.allclose(result.scores, expected.scores, atol=1e-5)
    for model in triton.layout.python_models:
        inferences = after[model][0] - before[model][0]
        executions = after[model][1] - before[model][1]
        assert inferences == len(cases) and executions < inferences, f"{model}: {executions} executes"


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

    from blip_build.checkpoints import make_tokenizer, tokenizer_text_config

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
    build = make_build(root, str(checkpoint), question_buckets=(12, 40), image_batch_buckets=(1, 2))
    reference = Reference(checkpoint)
    for layout in LAYOUT_NAMES:
        server = TritonServer(build.repository, "cpu", layout=layout)
        with server, BlipVqaClient(server.http_url) as odd_client:
            for path in VALID_IMAGES[:3]:
                result = odd_client.infer(path.read_bytes(), QUESTIONS)
                assert result.answers == [reference.answer(path, q) for q in QUESTIONS], layout
                assert np.allclose(result.scores, [reference.score(path, q) for q in QUESTIONS], atol=1e-5), layout


def test_a_static_shape_build_serves_the_same_results(static_build, client) -> None:
    """The artifacts Neuron would get (one per bucket, padded), served by the real server: same results."""
    with TritonServer(static_build.repository, "cpu") as server, BlipVqaClient(server.http_url) as static_client:
        for path in VALID_IMAGES[:3]:
            image = path.read_bytes()
            questions = [*QUESTIONS, *QUESTIONS[:2]]  # 5 questions: a chunk of 4 and one padded
            served, expected = static_client.infer(image, questions), client.infer(image, questions)
            assert served.answers == expected.answers
            assert np.allclose(served.scores, expected.scores, atol=1e-5)
