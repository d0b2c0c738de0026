"""Fuzzing through the real server: hostile images and question lists over tritonclient, in each layout.

Every request must end in an answer or a 400 naming the problem (``InvalidRequestError``): never a 500, a timeout
or a dead stub. After the run, every stub process is the one that started, and a valid frame is answered.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blip_client.client import InvalidRequestError
from tests.conftest import QUESTIONS, VALID_IMAGES
from tests.fuzzing import hostile_images, hostile_questions

SERVED = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_hostile_images_and_questions_get_an_answer_or_a_400_and_no_stub_dies(triton, client) -> None:
    stubs_before = {name: pid for name, (pid, _) in triton.stub_processes().items()}
    outcomes = {"answered": 0, "refused": 0}

    @SERVED
    @given(
        image=st.one_of(hostile_images(), st.sampled_from([VALID_IMAGES[0].read_bytes()])),
        questions=st.one_of(hostile_questions(), st.just(list(QUESTIONS[:2]))),
    )
    def one_request(image: bytes, questions) -> None:
        try:
            answers = client.ask(image, questions)
        except InvalidRequestError as error:
            message = str(error)
            assert any(word in message for word in ("IMAGE", "QUESTIONS", "question")), message
            outcomes["refused"] += 1
            return
        assert len(answers) == len(questions) and all(isinstance(a, str) for a in answers)
        outcomes["answered"] += 1

    one_request()
    print(f"\nserved fuzz ({triton.layout.name}): {outcomes}")
    stubs_after = {name: pid for name, (pid, _) in triton.stub_processes().items()}
    assert stubs_after == stubs_before, "no stub died or was replaced"
    assert outcomes["answered"] > 0 and outcomes["refused"] > 0, "both ends of the boundary were reached"
    assert len(client.ask(VALID_IMAGES[0].read_bytes(), QUESTIONS[:1])) == 1
