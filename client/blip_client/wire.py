"""The ``blip_vqa`` wire format, shared by the blocking client, the asyncio client and the router.

Tensor names come from ``blip_serving.spec``; this module only packs one frame and its questions into
tritonclient inputs, unpacks the answers, and turns tritonclient's exceptions into the typed errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from blip_client.errors import BlipVqaError, InvalidRequestError, ServerError, ServerUnavailableError
from blip_serving.spec import ANSWERS, IMAGE, QUESTIONS

_INVALID = {"400", "StatusCode.INVALID_ARGUMENT"}
_UNAVAILABLE = {"503", "StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"}


def encode_questions(questions: Sequence[str | bytes]) -> list[bytes]:
    if isinstance(questions, str | bytes):
        raise TypeError("questions must be a sequence of strings, not one string")
    return [q.encode("utf-8") if isinstance(q, str) else bytes(q) for q in questions]


def build_inputs(triton: ModuleType, image: bytes, questions: Sequence[str | bytes]) -> list[Any]:
    """IMAGE [1] and QUESTIONS [n] as BYTES inputs of ``triton`` (tritonclient.http, .http.aio or .grpc)."""
    if not isinstance(image, bytes | bytearray):
        raise TypeError(f"image must be the encoded file's bytes, got {type(image).__name__}")
    encoded = encode_questions(questions)
    image_input = triton.InferInput(IMAGE, [1], "BYTES")
    image_input.set_data_from_numpy(np.array([bytes(image)], dtype=np.object_))
    questions_input = triton.InferInput(QUESTIONS, [len(encoded)], "BYTES")
    questions_input.set_data_from_numpy(np.array(encoded, dtype=np.object_).reshape(len(encoded)))
    return [image_input, questions_input]


def requested_outputs(triton: ModuleType) -> list[Any]:
    return [triton.InferRequestedOutput(ANSWERS)]


def parse_answers(result: Any, count: int) -> list[str]:
    answers = result.as_numpy(ANSWERS)
    if answers is None or len(answers) != count:
        raise ServerError(f"expected {count} answers, got {None if answers is None else len(answers)}")
    return [a.decode("utf-8") if isinstance(a, bytes) else str(a) for a in answers.reshape(-1)]


def classify(error: Any) -> BlipVqaError:
    """A tritonclient ``InferenceServerException`` as the typed error its status means."""
    status, message = str(error.status()), error.message() or str(error)
    if status in _INVALID:
        return InvalidRequestError(message)
    if status in _UNAVAILABLE or "timed out" in message.lower() or "connect" in message.lower():
        return ServerUnavailableError(message)
    return ServerError(f"[{status}] {message}")
