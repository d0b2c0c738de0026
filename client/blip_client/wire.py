"""The ``blip_vqa`` wire format, shared by the blocking client, the asyncio client and the router.

Tensor names come from ``blip_contract``; this module only packs one frame and its questions into
tritonclient inputs, unpacks answers and yes/no scores, and turns tritonclient's exceptions into the typed errors.
A scores-only request sets the ``scores_only`` request parameter: the decoder runs one step and the response
holds SCORES alone.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from opentelemetry import propagate

from blip_client.errors import (
    BlipVqaError,
    InvalidRequestError,
    ServerError,
    ServerTimeoutError,
    ServerUnavailableError,
)
from blip_contract import ANSWERS, IMAGE, PUBLIC_INPUTS, QUESTIONS, SCORES, SCORES_ONLY, request_shape
from blip_contract.pixels import PIXELS, PixelSettings

# A 16x16 PNG: a health probe exercises the whole model (decode, resize, three components) at minimal cost.
PROBE_IMAGE = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAGklEQVR42mM8MS2KgRTAxEAiGNUwqmHoaAAAdNkB2Bua48gAAAAASUVORK5CYII="
)
PROBE_QUESTIONS = ("is there an animal?",)

_INVALID = {"400", "StatusCode.INVALID_ARGUMENT"}
_UNAVAILABLE = {"503", "StatusCode.UNAVAILABLE"}
_TIMEOUT = {"StatusCode.DEADLINE_EXCEEDED"}


def encode_questions(questions: Sequence[str | bytes]) -> list[bytes]:
    if isinstance(questions, str | bytes):
        raise TypeError("questions must be a sequence of strings, not one string")
    return [q.encode("utf-8") if isinstance(q, str) else bytes(q) for q in questions]


def build_inputs(triton: ModuleType, image: bytes, questions: Sequence[str | bytes]) -> list[Any]:
    """IMAGE [1, 1] and QUESTIONS [1, n] (one frame) as BYTES inputs of ``triton`` (tritonclient.http, .http.aio
    or .grpc)."""
    if not isinstance(image, bytes | bytearray):
        raise TypeError(f"image must be the encoded file's bytes, got {type(image).__name__}")
    image_shape = request_shape(PUBLIC_INPUTS[0])
    image_input = triton.InferInput(IMAGE, image_shape, "BYTES")
    image_input.set_data_from_numpy(np.array([bytes(image)], dtype=np.object_).reshape(image_shape))
    return [image_input, questions_input(triton, questions)]


def questions_input(triton: ModuleType, questions: Sequence[str | bytes]) -> Any:
    """QUESTIONS [1, n] as a BYTES input of ``triton``: the same in both forms of a frame."""
    encoded = encode_questions(questions)
    shape = request_shape(PUBLIC_INPUTS[1], len(encoded))
    tensor = triton.InferInput(QUESTIONS, shape, "BYTES")
    tensor.set_data_from_numpy(np.array(encoded, dtype=np.object_).reshape(shape))
    return tensor


class PixelSource(Protocol):
    """A frame the caller has decoded and can resize for any fleet (``blip_images.frame.Frame`` in the API tier);
    the client asks it for the pixels of the fleet it is sending to. Its errors are the caller's: the frame is bad."""

    def pixels(self, settings: PixelSettings) -> np.ndarray: ...


class FlatPixels:
    """A flat grey frame at any fleet's input size: the router's probe of the pixel path, with no decoder needed."""

    def pixels(self, settings: PixelSettings) -> np.ndarray:
        return np.full(settings.shape, 128, dtype=np.uint8)


PROBE_PIXELS = FlatPixels()

# What a call may carry: the encoded frame's bytes (to ``blip_vqa``), or a frame to resize (to ``blip_vqa_pixels``).
FrameInput = bytes | PixelSource


def build_pixel_inputs(triton: ModuleType, pixels: np.ndarray, questions: Sequence[str | bytes]) -> list[Any]:
    """PIXELS [1, H, W, 3] uint8 and QUESTIONS [1, n] as inputs of ``triton``: the pixel form of one frame."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3:
        raise TypeError(f"pixels must be uint8 [H, W, 3], got {pixels.dtype} {list(pixels.shape)}")
    pixel_input = triton.InferInput(PIXELS, [1, *pixels.shape], "UINT8")
    pixel_input.set_data_from_numpy(np.ascontiguousarray(pixels)[None])
    return [pixel_input, questions_input(triton, questions)]


@dataclass(frozen=True)
class VqaResult:
    """One frame's results, in question order: P(yes) against no, and the answers unless scores only."""

    scores: list[float]
    answers: list[str] | None
    # The request id Triton answered with: the one the caller sent, if any.
    request_id: str | None = None


def requested_outputs(triton: ModuleType, scores_only: bool) -> list[Any]:
    names = (SCORES,) if scores_only else (ANSWERS, SCORES)
    return [triton.InferRequestedOutput(name) for name in names]


def request_parameters(scores_only: bool) -> dict[str, Any] | None:
    return {SCORES_ONLY: True} if scores_only else None


def trace_headers() -> dict[str, str] | None:
    """The current OpenTelemetry context as W3C ``traceparent`` (and ``tracestate``) headers for Triton; None
    where no span is recording (no SDK configured, or nothing traced this request)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def parse_result(result: Any, count: int, scores_only: bool) -> VqaResult:
    scores = result.as_numpy(SCORES)
    if scores is None or scores.size != count:
        raise ServerError(f"expected {count} scores, got {None if scores is None else scores.size}")
    answers = None
    if not scores_only:
        raw = result.as_numpy(ANSWERS)
        if raw is None or raw.size != count:
            raise ServerError(f"expected {count} answers, got {None if raw is None else raw.size}")
        answers = [a.decode("utf-8") if isinstance(a, bytes) else str(a) for a in raw.reshape(-1)]
    # The id Triton answered with: tritonclient.http's response is a dict, tritonclient.grpc's a protobuf message.
    response = result.get_response() if hasattr(result, "get_response") else None
    echoed = response.get("id") if isinstance(response, dict) else getattr(response, "id", None)
    return VqaResult(scores=[float(s) for s in scores.reshape(-1)], answers=answers, request_id=echoed or None)


def classify(error: Any) -> BlipVqaError:
    """A tritonclient ``InferenceServerException`` as the typed error its status means."""
    status, message = str(error.status()), error.message() or str(error)
    if status in _INVALID:
        return InvalidRequestError(message)
    # tritonclient.http reports socket timeouts and refused connections with no status, only a message.
    if status in _TIMEOUT or "timed out" in message.lower():
        return ServerTimeoutError(message)
    if status in _UNAVAILABLE or "connect" in message.lower():
        return ServerUnavailableError(message)
    return ServerError(f"[{status}] {message}")
