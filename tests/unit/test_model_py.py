"""The three model.py files under a stubbed ``triton_python_backend_utils``: lifecycle and error isolation."""

from __future__ import annotations

import numpy as np
import pytest
import triton_python_backend_utils as pb_utils  # the stub from tests/unit/conftest.py

from tests.conftest import QUESTIONS, VALID_IMAGES
from tests.unit.conftest import load_model


@pytest.fixture(scope="module")
def models(tiny_build):
    return {name: load_model(tiny_build.repository, name) for name in ("image_encoder", "text_encoder", "text_decoder")}


def request(**inputs):
    return pb_utils.InferenceRequest({name: np.asarray(value) for name, value in inputs.items()})


def image(path) -> np.ndarray:
    """IMAGE as a request sends it: one frame, [1, 1]."""
    return np.array([[path.read_bytes()]], dtype=object)


def questions(texts) -> np.ndarray:
    """QUESTIONS as a request sends them: [1, N]."""
    return np.array([[q.encode() for q in texts]], dtype=object)


def test_a_bad_request_fails_alone_and_the_batch_succeeds(models) -> None:
    good = image(VALID_IMAGES[0])
    responses = models["image_encoder"].execute(
        [request(IMAGE=good), request(IMAGE=np.array([[b"junk"]], dtype=object)), request(IMAGE=good)]
    )
    assert responses[1].error.code() == pb_utils.TritonError.INVALID_ARG
    assert "not an image" in responses[1].error.message()
    first, third = responses[0].outputs()["IMAGE_EMBEDS"], responses[2].outputs()["IMAGE_EMBEDS"]
    assert responses[0].error is None and np.array_equal(first, third)


def test_three_models_chain_to_the_reference_answers(models, tiny_reference) -> None:
    path = VALID_IMAGES[0]
    (embeds,) = models["image_encoder"].execute([request(IMAGE=image(path))])
    (encoded,) = models["text_encoder"].execute([request(QUESTIONS=questions(QUESTIONS), **embeds.outputs())])
    (decoded,) = models["text_decoder"].execute([request(**encoded.outputs())])
    assert decoded.outputs()["ANSWERS"].shape == (1, len(QUESTIONS)), "one frame: batch 1, then the questions"
    answers = [a.decode() for a in decoded.outputs()["ANSWERS"].reshape(-1)]
    assert answers == [tiny_reference.answer(path, q) for q in QUESTIONS]


def test_frames_of_an_execute_share_one_text_encoder_call_and_each_gets_its_own_rows(models) -> None:
    """Three frames with 3, 1 and 2 questions (16- and 32-token buckets) in one execute: each request's output
    equals its own execute alone, at its own token bucket."""
    long_question = "is the dog on the couch or is the cat on the couch " * 2 + "?"
    cases = [(VALID_IMAGES[0], QUESTIONS), (VALID_IMAGES[1], [long_question]), (VALID_IMAGES[2], QUESTIONS[:2])]
    embeds = models["image_encoder"].execute([request(IMAGE=image(path)) for path, _ in cases])
    requests = [request(QUESTIONS=questions(texts), **e.outputs()) for (_, texts), e in zip(cases, embeds)]
    together = models["text_encoder"].execute(requests)
    for one, alone in zip(together, (models["text_encoder"].execute([r])[0] for r in requests)):
        ours, theirs = one.outputs(), alone.outputs()
        assert ours["QUESTION_EMBEDS"].shape == theirs["QUESTION_EMBEDS"].shape
        assert np.allclose(ours["QUESTION_EMBEDS"], theirs["QUESTION_EMBEDS"], atol=1e-5)
        assert np.array_equal(ours["QUESTION_MASK"], theirs["QUESTION_MASK"])
    assert [r.outputs()["QUESTION_MASK"].shape[1:] for r in together] == [(3, 16), (1, 32), (2, 16)]


def test_wrong_shapes_between_steps_are_invalid_not_crashes(models) -> None:
    bad = request(QUESTION_EMBEDS=np.zeros((2, 5, 3), dtype=np.float32), QUESTION_MASK=np.ones((2, 5), dtype=np.int64))
    (response,) = models["text_decoder"].execute([bad])
    assert response.error.code() == pb_utils.TritonError.INVALID_ARG
    assert "QUESTION_EMBEDS has shape [2, 5, 3]" in response.error.message()


def test_an_internal_failure_is_answered_and_logged(models, monkeypatch) -> None:
    component = models["text_decoder"].served
    monkeypatch.setattr(component.model, "run", lambda items: (_ for _ in ()).throw(RuntimeError("boom")))
    spec = component.model.spec
    good = request(
        QUESTION_EMBEDS=np.zeros((1, 1, spec.question_tokens, spec.text_hidden_size), dtype=np.float32),
        QUESTION_MASK=np.ones((1, 1, spec.question_tokens), dtype=np.int64),
    )
    (response,) = models["text_decoder"].execute([good])
    assert response.error.code() == pb_utils.TritonError.INTERNAL
    assert any(level == "error" and "boom" in line for level, line in pb_utils.Logger.lines)


def test_missing_input_is_named(models) -> None:
    (response,) = models["text_encoder"].execute([request(QUESTIONS=np.array([[b"hi?"]], dtype=object))])
    assert response.error.code() == pb_utils.TritonError.INVALID_ARG
    assert "input IMAGE_EMBEDS is missing" in response.error.message()


def _encoded(models, path, texts):
    (embeds,) = models["image_encoder"].execute([request(IMAGE=image(path))])
    (encoded,) = models["text_encoder"].execute([request(QUESTIONS=questions(texts), **embeds.outputs())])
    return encoded.outputs()


def test_scores_only_and_answer_requests_share_one_decoder_batch(models, tiny_reference) -> None:
    """Frames with 16- and 32-token buckets, scores-only and answer mode, all in one execute."""
    long_question = "is the dog on the couch or is the cat on the couch " * 2 + "?"
    first, second = VALID_IMAGES[0], VALID_IMAGES[1]
    short = _encoded(models, first, QUESTIONS)
    long = _encoded(models, second, [long_question])
    assert short["QUESTION_MASK"].shape[2] == 16 and long["QUESTION_MASK"].shape[2] == 32
    requests = [
        pb_utils.InferenceRequest(short, {"scores_only": True}),
        pb_utils.InferenceRequest(long),
        pb_utils.InferenceRequest(short, {"scores_only": "maybe"}),
    ]
    scored, answered, refused = models["text_decoder"].execute(requests)
    assert set(scored.outputs()) == {"SCORES"}, "scores only: no answers computed or sent"
    assert np.allclose(scored.outputs()["SCORES"], [[tiny_reference.score(first, q) for q in QUESTIONS]], atol=1e-5)
    assert [a.decode() for a in answered.outputs()["ANSWERS"].reshape(-1)] == [
        tiny_reference.answer(second, long_question)
    ]
    assert np.allclose(answered.outputs()["SCORES"], [[tiny_reference.score(second, long_question)]], atol=1e-5)
    assert refused.error.code() == pb_utils.TritonError.INVALID_ARG
    assert "scores_only must be true or false, got 'maybe'" in refused.error.message()


def test_question_tokens_off_the_buckets_are_refused(models) -> None:
    spec = models["text_decoder"].served.model.spec
    bad = request(
        QUESTION_EMBEDS=np.zeros((1, 1, 20, spec.text_hidden_size), dtype=np.float32),
        QUESTION_MASK=np.ones((1, 1, 20), dtype=np.int64),
    )
    (response,) = models["text_decoder"].execute([bad])
    assert response.error.code() == pb_utils.TritonError.INVALID_ARG
    assert "has 20 tokens; the question buckets are [16, 32]" in response.error.message()


def test_freed_memory_goes_back_after_load_and_after_executes_at_most_once_a_second(monkeypatch) -> None:
    """A trim after every execute cost about 5 CPU-ms a frame once frames came as pixels (make bench-pixels)."""
    from blip_serving.stub import triton_adapter

    class Libc:
        trims = 0

        def malloc_trim(self, pad: int) -> None:
            Libc.trims += 1

    clock = [100.0]
    monkeypatch.setattr(triton_adapter, "_libc", Libc)
    monkeypatch.setattr(triton_adapter.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(triton_adapter, "_trimmed_at", float("-inf"))
    triton_adapter.release_freed_memory()  # after the artifacts load: always
    for _ in range(50):  # 50 executes within the second
        triton_adapter.release_freed_memory(after_execute=True)
    assert Libc.trims == 1
    clock[0] += triton_adapter.TRIM_INTERVAL_S
    triton_adapter.release_freed_memory(after_execute=True)
    assert Libc.trims == 2
    monkeypatch.setenv("BLIP_MALLOC_TRIM", "load")
    clock[0] += 10
    triton_adapter.release_freed_memory(after_execute=True)
    assert Libc.trims == 2, "load: never after an execute"
    triton_adapter.release_freed_memory()
    assert Libc.trims == 3
    monkeypatch.setenv("BLIP_MALLOC_TRIM", "execute")
    for _ in range(5):
        triton_adapter.release_freed_memory(after_execute=True)
    assert Libc.trims == 8, "execute: after every one"
