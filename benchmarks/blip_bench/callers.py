"""The served measurement's callers: each a client of its own sending one frame, as the API tier's router does."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from blip_bench.frames import BEHAVIOR_QUESTIONS
from blip_bench.timing import MakeCaller
from blip_client.client import BlipVqaClient


def frame_callers(
    url: str,
    image: bytes,
    questions: Sequence[str] = BEHAVIOR_QUESTIONS,
    *,
    protocol: str = "http",
    scores_only: bool = True,
    timeout_s: float = 600.0,
) -> MakeCaller:
    """A ``make_caller`` for ``timing.concurrent``: every caller gets its own client (its own connection), closed
    when its ``with`` ends. An HTTP connection left open holds tritonserver's shutdown for its whole 30 s exit
    timeout, so a benchmark that stops its server after measuring closes its callers first."""

    @contextlib.contextmanager
    def make_caller() -> Iterator[Callable[[], object]]:
        with BlipVqaClient(url, protocol=protocol, timeout_s=timeout_s) as client:
            yield lambda: client.infer(image, questions, scores_only=scores_only)

    return make_caller
