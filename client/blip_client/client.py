"""A typed client for the ``blip_vqa`` ensemble over tritonclient, HTTP or gRPC.

``ask(image_bytes, questions) -> answers``, ``scores(image_bytes, questions) -> P(yes) per question`` (one
decoder step), ``infer(...)`` for both. Errors come back as typed exceptions, so the API tier can map a
caller's mistake (``InvalidRequestError``, HTTP 400) apart from a server that cannot answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from http.client import HTTPException
from typing import Any

from blip_client.errors import (
    BlipVqaError,
    InvalidRequestError,
    NoBackendAvailableError,
    ServerError,
    ServerUnavailableError,
)
from blip_client.wire import (
    VqaResult,
    build_inputs,
    classify,
    parse_result,
    request_parameters,
    requested_outputs,
    trace_headers,
)
from blip_contract import PUBLIC_MODEL

__all__ = [
    "BlipVqaClient",
    "BlipVqaError",
    "InvalidRequestError",
    "NoBackendAvailableError",
    "ServerError",
    "ServerUnavailableError",
    "VqaResult",
]


class BlipVqaClient:
    """One connection to a Triton endpoint that serves ``blip_vqa``."""

    def __init__(
        self,
        url: str = "127.0.0.1:8000",
        *,
        protocol: str = "http",
        model: str = PUBLIC_MODEL,
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

    def infer(self, image: bytes, questions: Sequence[str | bytes], *, scores_only: bool = False) -> VqaResult:
        """Scores (and answers, unless ``scores_only``) for ``questions`` about one encoded image, in order."""
        inputs = build_inputs(self._triton, image, questions)
        outputs = requested_outputs(self._triton, scores_only)
        parameters = request_parameters(scores_only)
        try:
            if self.protocol == "http":
                result = self._client.infer(
                    self.model, inputs, outputs=outputs, parameters=parameters, headers=trace_headers()
                )
            else:
                result = self._client.infer(
                    self.model,
                    inputs,
                    outputs=outputs,
                    parameters=parameters,
                    client_timeout=self.timeout_s,
                    headers=trace_headers(),
                )
        except self._exception_type() as error:
            raise classify(error) from error
        except (ConnectionError, TimeoutError, OSError, HTTPException) as error:
            # HTTPException: geventhttpclient's "connection closed" while a server goes away mid-request.
            raise ServerUnavailableError(f"{self.url}: {type(error).__name__}: {error}") from error
        return parse_result(result, len(questions), scores_only)

    def ask(self, image: bytes, questions: Sequence[str | bytes]) -> list[str]:
        """Answers to ``questions`` about one encoded image, in order."""
        answers = self.infer(image, questions).answers
        assert answers is not None  # answer mode always parses them
        return answers

    def scores(self, image: bytes, questions: Sequence[str | bytes]) -> list[float]:
        """P(yes) against no for each question: the decoder's first step only."""
        return self.infer(image, questions, scores_only=True).scores

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
