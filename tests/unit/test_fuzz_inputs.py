"""Property-based fuzzing of the stub's input boundary: image decoding and preprocessing, question parsing and
tokenizing. Every input must end in a usable tensor or in ``InvalidInputError`` naming the input (a 400 on the
wire): never another exception, never a hang. Fixed seeds (``derandomize``) and bounded example counts keep the run
the same on every machine; a failure found once stays below as an ``@example``.
"""

from __future__ import annotations

import contextlib
import signal

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from blip_images.decode import decode_image
from blip_images.resize import Resizer
from blip_serving.errors import InvalidInputError
from blip_serving.stub.questions import CheckpointTokenizer, QuestionTokenizer, decode_questions
from tests.fuzzing import hostile_images, hostile_questions

LIMITS = {"max_bytes": 20 * 2**20, "max_pixels": 40_000_000}
HANG_S = 10  # one input taking this long is a hang, whatever it is
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,  # the hang guard below bounds each example instead; first decodes warm caches
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@contextlib.contextmanager
def hang_guard(seconds: int = HANG_S):
    """Fail the example, rather than the suite, when one input does not finish."""

    def timeout(signum, frame):
        raise TimeoutError(f"input still being processed after {seconds} s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def preprocess(tiny_build):
    from blip_serving.manifest import read_manifest

    return Resizer(read_manifest(tiny_build.target_dir()).spec.pixel_settings())


@pytest.fixture(scope="module")
def tokenize(tiny_build):
    from blip_serving.manifest import read_manifest

    manifest = read_manifest(tiny_build.target_dir())
    return QuestionTokenizer(CheckpointTokenizer(manifest.processor_dir), manifest.spec.question_buckets), manifest


# Regression cases: inputs that once got past the boundary as something other than an answer or a named refusal.
@example(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8)
@example(b"GIF89a\xff\xff\xff\xff")
@example(b"BM" + b"\xff" * 60)
@settings(FUZZ, max_examples=400)
@given(data=hostile_images())
def test_every_image_input_ends_in_pixels_or_a_named_refusal(preprocess, data: bytes) -> None:
    with hang_guard():
        try:
            image = decode_image(data, **LIMITS)
        except InvalidInputError as error:
            assert str(error).startswith("IMAGE "), f"the refusal names the input: {error}"
            return
        pixels = preprocess(image)
    assert pixels.shape == preprocess.settings.shape and pixels.dtype == np.uint8


@settings(FUZZ, max_examples=300)
@given(questions=hostile_questions())
def test_every_question_list_ends_in_tokens_or_a_named_refusal(tokenize, questions) -> None:
    tokenizer, manifest = tokenize
    raw = np.empty(len(questions), dtype=object)
    raw[:] = questions
    with hang_guard():
        try:
            texts = decode_questions(raw, max_questions=manifest.spec.max_questions)
            input_ids, mask = tokenizer(texts)
        except InvalidInputError as error:
            assert "question" in str(error).lower(), f"the refusal names the input: {error}"
            return
    assert input_ids.shape == mask.shape and input_ids.shape[0] == len(texts)
    assert input_ids.shape[1] in manifest.spec.question_buckets


@settings(FUZZ, max_examples=60)
@given(text=st.text(min_size=1, max_size=50).filter(str.strip))
def test_any_nonblank_unicode_question_within_the_limits_is_accepted(tokenize, text: str) -> None:
    """Accepted when its tokens fit the largest bucket; else refused naming exactly that count, and only then."""
    tokenizer, manifest = tokenize
    texts = decode_questions(np.array([text.encode()], dtype=object), max_questions=manifest.spec.max_questions)
    assert texts == [text]
    (ids,) = tokenizer.tokenizer.encode(texts)
    limit = manifest.spec.question_buckets[-1]
    if len(ids) > limit:
        with pytest.raises(InvalidInputError, match=f"question 1 is {len(ids)} tokens long; the limit is {limit}"):
            tokenizer(texts)
        return
    input_ids, mask = tokenizer(texts)
    assert input_ids[0, : len(ids)].tolist() == ids and int(mask.sum()) == len(ids)
