"""The served measurement's callers: each a client of its own sending one frame, as the API tier's router does."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from blip_bench.frames import BEHAVIOR_QUESTIONS
from blip_client.client import BlipVqaClient


def frame_callers(
    url: str,
    image: bytes,
    questions: Sequence[str] = BEHAVIOR_QUESTIONS,
    *,
    protocol: str = "http",
    scores_only: bool = True,
    timeout_s: float = 600.0,
) -> Callable[[], Callable[[], object]]:
    """A ``make_caller`` for ``timing.concurrent``: every caller gets its own client (its own connection)."""

    def make_caller() -> Callable[[], object]:
        client = BlipVqaClient(url, protocol=protocol, timeout_s=timeout_s)
        return lambda: client.infer(image, questions, scores_only=scores_only)

    return make_caller
