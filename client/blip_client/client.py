"""A typed client for the ``blip_vqa`` ensemble over tritonclient, HTTP or gRPC.

``ask(image_bytes, questions) -> answers``. Errors come back as typed exceptions, so the API tier can map a
caller's mistake (``InvalidRequestError``, HTTP 400) apart from a server that cannot answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from blip_serving.spec import ANSWERS, ENSEMBLE_NAME, IMAGE, QUESTIONS


class BlipVqaError(Exception):
    """Any failure of a ``blip_vqa`` call."""


class InvalidRequestError(BlipVqaError):
    """The server refused the request itself (INVALID_ARG, HTTP 400): the message names what was wrong."""


class ServerUnavailableError(BlipVqaError):
    """The server could not be reached, timed out, or is not ready."""


class ServerError(BlipVqaError):
    """The server failed while answering a valid request."""


_INVALID = {"400", "StatusCode.INVALID_ARGUMENT"}
_UNAVAILABLE = {"503", "StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"}


class BlipVqaClient:
    """One connection to a Triton endpoint that serves ``blip_vqa``."""

    def __init__(
        self,
        url: str = "127.0.0.1:8000",
        *,
        protocol: str = "http",
        model: str = ENSEMBLE_NAME,
        timeout_s: float = 60.0,
    ) -> None:
        if protocol not in ("http", "grpc"):
            raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
        self.url, self.protocol, self.model, self.timeout_s = url, protocol, model, timeout_s
        if protocol == "http":
            import tritonclient.http as triton

            self._client: Any = triton.InferenceServerClient(
                url, connection_timeout=timeout_s, network_timeout=timeout_s
            )
        else:
            import tritonclient.grpc as triton

            self._client = triton.InferenceServerClient(url)
        self._triton = triton

    def _inputs(self, image: bytes, questions: Sequence[str | bytes]) -> list[Any]:
        if not isinstance(image, bytes | bytearray):
            raise TypeError(f"image must be the encoded file's bytes, got {type(image).__name__}")
        if isinstance(questions, str | bytes):
            raise TypeError("questions must be a sequence of strings, not one string")
        encoded = [q.encode("utf-8") if isinstance(q, str) else bytes(q) for q in questions]
        image_input = self._triton.InferInput(IMAGE, [1], "BYTES")
        image_input.set_data_from_numpy(np.array([bytes(image)], dtype=np.object_))
        questions_input = self._triton.InferInput(QUESTIONS, [len(encoded)], "BYTES")
        questions_input.set_data_from_numpy(np.array(encoded, dtype=np.object_).reshape(len(encoded)))
        return [image_input, questions_input]

    def ask(self, image: bytes, questions: Sequence[str | bytes]) -> list[str]:
        """Answers to ``questions`` about one encoded image, in order."""
        inputs = self._inputs(image, questions)
        outputs = [self._triton.InferRequestedOutput(ANSWERS)]
        try:
            if self.protocol == "http":
                result = self._client.infer(self.model, inputs, outputs=outputs)
            else:
                result = self._client.infer(self.model, inputs, outputs=outputs, client_timeout=self.timeout_s)
        except self._exception_type() as error:
            raise _classify(error) from error
        except (ConnectionError, TimeoutError, OSError) as error:
            raise ServerUnavailableError(f"{self.url}: {error}") from error
        answers = result.as_numpy(ANSWERS)
        if answers is None or len(answers) != len(questions):
            raise ServerError(f"expected {len(questions)} answers, got {None if answers is None else len(answers)}")
        return [a.decode("utf-8") if isinstance(a, bytes) else str(a) for a in answers.reshape(-1)]

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model))
        except Exception:
            return False

    def _exception_type(self) -> type[Exception]:
        from tritonclient.utils import InferenceServerException

        return InferenceServerException

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> BlipVqaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _classify(error: Any) -> BlipVqaError:
    status, message = str(error.status()), error.message() or str(error)
    if status in _INVALID:
        return InvalidRequestError(message)
    if status in _UNAVAILABLE or "timed out" in message.lower() or "connect" in message.lower():
        return ServerUnavailableError(message)
    return ServerError(f"[{status}] {message}")
