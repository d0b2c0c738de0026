"""What the API says on the wire: response models, the admin request, and the frame request as OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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


def frame_openapi(limits: Limits, behaviors: list[str]) -> dict[str, Any]:
    """The ``/v1/frames`` request as OpenAPI, from the settings in force (behavior names, limits).

    Whether the bytes decode as an image, and the total count of questions and behaviors, cannot be said in
    JSON Schema: those are the 400s the responses list.
    """
    question = {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": limits.max_question_chars, "pattern": "\\S"},
        "maxItems": limits.max_questions,
    }
    behavior = {"type": "array", "items": {"type": "string", "enum": behaviors}, "maxItems": limits.max_questions}
    binary = {"type": "string", "format": "binary", "maxLength": limits.max_image_bytes}
    at_least_one = [
        {"required": [name], "properties": {name: {"type": "array", "minItems": 1}}}
        for name in ("question", "behavior")
    ]
    # A form field is there or not: null is an absent field, which the other list may make up for.
    absent_or = {
        name: {**schema, "type": ["array", "null"]} for name, schema in (("question", question), ("behavior", behavior))
    }
    multipart = {
        "type": "object",
        "required": ["image"],
        "properties": {"image": binary, **absent_or},
        "additionalProperties": False,
        "anyOf": at_least_one,
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": multipart},
                "application/octet-stream": {"schema": binary},
                "image/*": {"schema": binary},
            },
        },
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": schema, "description": "raw bodies only"}
            for name, schema in (("question", question), ("behavior", behavior))
        ],
    }
