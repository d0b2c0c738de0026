"""Every bad input gets a 400 naming what was wrong; the server stays ready and answers the next request."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as http
from tritonclient.utils import InferenceServerException

from blip_client.client import InvalidRequestError
from tests.conftest import INVALID_IMAGES, QUESTIONS, VALID_IMAGES

GOOD = VALID_IMAGES[0].read_bytes()


def _still_serving(client, triton) -> None:
    assert triton.is_ready() and triton.process.poll() is None
    assert len(client.ask(GOOD, QUESTIONS[:1])) == 1


@pytest.mark.parametrize("path", INVALID_IMAGES, ids=lambda p: p.name)
def test_invalid_image_files(path, client, triton) -> None:
    with pytest.raises(InvalidRequestError, match="IMAGE"):
        client.ask(path.read_bytes(), QUESTIONS)
    _still_serving(client, triton)


@pytest.mark.parametrize(
    ("image", "questions", "message"),
    [
        (b"", QUESTIONS, "IMAGE is empty"),
        (b"GIF89a not really", QUESTIONS, "IMAGE"),
        (b"just some text, not an image", QUESTIONS, "not an image"),
        (GOOD, [], "QUESTIONS is empty"),
        (GOOD, ["Is the dog barking?", ""], "question 2 is empty"),
        (GOOD, ["dog " * 60], "question 1 is .* tokens long; the limit is 32"),
        (GOOD, [b"\xc3\x28 invalid utf-8"], "question 1 is not valid UTF-8"),
        (GOOD, ["Is it?"] * 17, "17 questions; the limit is 16"),
    ],
    ids=[
        "empty-image",
        "fake-gif",
        "text-as-image",
        "no-questions",
        "empty-question",
        "too-long",
        "non-utf8",
        "too-many",
    ],
)
def test_bad_requests(image, questions, message, client, triton) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        client.ask(image, questions)
    _still_serving(client, triton)


def test_raw_http_status_is_400_through_the_ensemble(triton, client) -> None:
    raw = http.InferenceServerClient(triton.http_url)
    try:
        image = http.InferInput("IMAGE", [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[b"junk"]], dtype=object))
        questions = http.InferInput("QUESTIONS", [1, 1], "BYTES")
        questions.set_data_from_numpy(np.array([[b"Is the dog barking?"]], dtype=object))
        with pytest.raises(InferenceServerException) as caught:
            raw.infer("blip_vqa", [image, questions])
        assert caught.value.status() == "400"
        # Two frames in one request: refused by name (the server batches concurrent requests itself).
        two_images = http.InferInput("IMAGE", [2, 1], "BYTES")
        two_images.set_data_from_numpy(np.array([[GOOD], [GOOD]], dtype=object))
        two_questions = http.InferInput("QUESTIONS", [2, 1], "BYTES")
        two_questions.set_data_from_numpy(np.array([[b"Is the dog barking?"]] * 2, dtype=object))
        with pytest.raises(InferenceServerException) as caught:
            raw.infer("blip_vqa", [two_images, two_questions])
        assert caught.value.status() == "400" and "one encoded image per request" in caught.value.message()
        # The contract before frames were batched (IMAGE [1], no batch dimension): Triton names the shape.
        unbatched = http.InferInput("IMAGE", [1], "BYTES")
        unbatched.set_data_from_numpy(np.array([GOOD], dtype=object))
        with pytest.raises(InferenceServerException) as caught:
            raw.infer("blip_vqa", [unbatched, questions])
        assert caught.value.status() == "400" and "IMAGE" in caught.value.message()
    finally:
        raw.close()
    _still_serving(client, triton)


def test_metrics_count_the_failures_and_successes(triton, client) -> None:
    import urllib.request

    client.ask(GOOD, QUESTIONS[:1])
    text = urllib.request.urlopen(triton.metrics_url, timeout=5).read().decode()
    success = [line for line in text.splitlines() if line.startswith('nv_inference_request_success{model="blip_vqa"')]
    assert success and float(success[0].split()[-1]) >= 1
