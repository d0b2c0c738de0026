"""The records that cross the event layer's steps: a camera's state between frames, an event as owners see it, a
frame's outcome, and a webhook's body. Times inside are unix seconds of capture; the API writes RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from blip_events.machine import BehaviorState


def rfc3339(at: float | None) -> str | None:
    return (
        None
        if at is None
        else datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class CameraState(BaseModel):
    """Everything a camera's next frame needs, kept in the store so that any API replica can take it."""

    model_config = ConfigDict(extra="forbid")

    last_captured_at: float | None = Field(None, description="Capture time of the last processed frame.")
    last_inferred_at: float | None = Field(None, description="Capture time of the last inferred frame.")
    inferred_at: list[float] = Field(default_factory=list, description="Inferences in the last minute (budget).")
    scores: dict[str, float] = Field(default_factory=dict, description="The last inferred score per behaviour.")
    behaviors: dict[str, BehaviorState] = Field(default_factory=dict)


class EventView(BaseModel):
    """An event as the API and the webhooks show it (the issue's public shape; fields may be added)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    camera_id: str
    behavior: str
    question: str
    state: Literal["active", "ended"]
    started_at: str
    ended_at: str | None
    peak_score: float
    peak_at: str
    frames_inferred: int
    frames_gated: int


class EventChange(BaseModel):
    """What one frame did to one event: ``started``, ``updated`` (the peak rose) or ``ended``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["started", "updated", "ended"]
    event: EventView


class WebhookBody(BaseModel):
    """The JSON a receiver gets, by webhook or as an MQTT message; its ``delivery_id`` is the ``Idempotency-Key``
    of every attempt (each channel's delivery has its own)."""

    model_config = ConfigDict(extra="forbid")

    delivery_id: str
    kind: Literal["started", "ended"]
    camera_id: str
    event: EventView


class BehaviorOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    behavior: str
    question: str
    score: float | None = Field(description="This frame's score, or the last inferred frame's; None before any.")
    source: Literal["inferred", "reused", "none"]
    scored_at: str | None = Field(description="captured_at of the frame the score comes from.")
    state: Literal["idle", "active"]
    event_id: str | None


class FrameOutcome(BaseModel):
    """``POST /v1/cameras/{id}/frames``' answer."""

    model_config = ConfigDict(extra="forbid")

    camera_id: str
    captured_at: str
    gated: bool
    reason: str = Field(description="Why the frame was inferred or gated (the gate's reason, or late).")
    late: bool = Field(False, description="Older than the last processed frame: answered from the state, no change.")
    results: list[BehaviorOutcome]
    events: list[EventChange]
    backend: str | None = None
    attempts: int = 0
