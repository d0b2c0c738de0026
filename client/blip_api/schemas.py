"""What the API says on the wire: response models, the admin request, and the frame request as OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from blip_api.errors import ApiError
from blip_api.settings import Limits


class BehaviorResult(BaseModel):
    behavior: str | None = Field(description="the behavior's name, or null for a free question")
    question: str
    score: float = Field(description="P(yes) against no, from the decoder's first step")
    answer: str | None = Field(description="the generated answer; null when only behaviors were asked (scores only)")
    alert: bool = Field(description="score reached the alert threshold")


class FrameResult(BaseModel):
    results: list[BehaviorResult]
    backend: str = Field(description="the fleet that answered")
    attempts: int = Field(description="backends tried, 1 unless one failed over")
    latency_ms: float


class Promotion(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    force: bool = Field(False, description="promote even where the canary's checks refuse it")


class WeightChange(BaseModel):
    # Strict: JSON false is not a weight of 0 (pydantic's lax mode would take it and drain the fleet).
    model_config = ConfigDict(extra="forbid", strict=True)

    weight: float = Field(ge=0, description="new routing weight; 0 drains the backend")


def _frame_request(limits: Limits, fields: dict[str, dict[str, Any]], what: str) -> dict[str, Any]:
    """A frame route's request as OpenAPI: the image as a multipart file or the raw body, and ``fields`` (name ->
    JSON Schema) as form fields or query parameters, with either body (a list takes both, query first; a single
    value given twice is refused)."""
    binary = {"type": "string", "format": "binary", "maxLength": limits.max_image_bytes}
    # A form field is there or not: null is an absent field.
    optional = {name: {**schema, "type": [schema["type"], "null"]} for name, schema in fields.items()}
    multipart = {
        "type": "object",
        "required": ["image"],
        "properties": {"image": binary, **optional},
        "additionalProperties": False,
    }
    return {
        "requestBody": {
            "required": True,
            "description": what,
            "content": {
                "multipart/form-data": {"schema": multipart},
                "application/octet-stream": {"schema": binary},
                "image/*": {"schema": binary},
            },
        },
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": schema,
                "description": "with either body (a multipart body may carry it as a form field instead)",
            }
            for name, schema in fields.items()
        ],
    }


def frame_openapi(limits: Limits, behaviors: list[str]) -> dict[str, Any]:
    """The ``/v1/frames`` request as OpenAPI, from the settings in force (behavior names, limits).

    Whether the bytes decode as an image, that at least one question or behavior is asked (in the form or the
    query: JSON Schema cannot join the two), and the total count of questions and behaviors cannot be said in
    JSON Schema: those are the 400s the responses list.
    """
    question = {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": limits.max_question_chars, "pattern": "\\S"},
        "maxItems": limits.max_questions,
    }
    behavior = {"type": "array", "items": {"type": "string", "enum": behaviors}, "maxItems": limits.max_questions}
    what = "the frame, and at least one question or behavior (form fields or query parameters)"
    return _frame_request(limits, {"question": question, "behavior": behavior}, what)


def camera_frame_openapi(limits: Limits) -> dict[str, Any]:
    """A camera's frame (``/v1/cameras/{camera_id}/frames``) as OpenAPI: the frame and its capture time; the
    behaviours asked are the camera's own."""
    captured_at = {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 with an offset (2026-12-03T10:00:00Z); default: when the frame arrived",
    }
    return _frame_request(limits, {"captured_at": captured_at}, "the camera's frame, and when it was captured")


class QueryNames:
    """The query parameters each route declares in the OpenAPI document: any other is refused with 400 naming it,
    so that a misspelt parameter (``?limt=5``, ``?behaviour=``) is never silently ignored. The document is the one
    place a route's parameters are written; this reads it once (the names do not change with a reload)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.declared = {
            (method.upper(), path): frozenset(p["name"] for p in operation.get("parameters", []) if p["in"] == "query")
            for path, operations in document["paths"].items()
            for method, operation in operations.items()
        }

    def check(self, method: str, route: str, given: list[str]) -> None:
        allowed = self.declared.get((method, route))
        if allowed is None:  # not a documented route (the docs page, a 404 or 405 to come)
            return
        unknown = sorted(set(given) - allowed)
        if unknown:
            takes = ", ".join(sorted(allowed)) or "none"
            raise ApiError(400, f"unknown query parameter(s) {unknown}; {method} {route} takes: {takes}")
