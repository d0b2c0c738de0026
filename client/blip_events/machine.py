"""One behaviour of one camera as a state machine over inferred scores; gated frames only move the clock.

- **Start**: the median of the last ``smoothing`` inferred scores reaches the enter threshold on ``min_frames``
  inferred frames in a row (Frigate's median-of-recent-scores, with its minimum frame count).
- **End**: the smoothed score stays below the exit threshold (hysteresis: below enter) for ``cutoff_s`` of capture
  time, measured from the first frame below it; the event ends at that frame's time.
- **Cooldown**: a start within ``cooldown_s`` of the last notified start reopens that event instead of notifying
  a new one, so one bark with a lull in it is one event.
"""

from __future__ import annotations

import statistics
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from blip_contract import reaches
from blip_events.settings import EventSettings, Thresholds


class Transition(StrEnum):
    STARTED = "started"  # a new event: notify
    REOPENED = "reopened"  # the last event again, inside the cooldown: no notification
    ENDED = "ended"  # notify


class BehaviorState(BaseModel):
    """What the machine keeps between frames, per camera and behaviour (stored with the camera)."""

    model_config = ConfigDict(extra="forbid")

    active: bool = False
    event_id: str | None = None
    recent: list[float] = Field(default_factory=list, description="The last inferred scores, oldest first.")
    streak: int = Field(0, description="Inferred frames in a row whose smoothed score reached enter (while idle).")
    below_since: float | None = Field(None, description="Capture time the smoothed score fell below exit (active).")
    last_started_at: float | None = Field(None, description="Capture time of the last notified start.")
    last_event_id: str | None = None

    @property
    def smoothed(self) -> float | None:
        return statistics.median(self.recent) if self.recent else None


def observe(
    state: BehaviorState, score: float | None, at: float, thresholds: Thresholds, events: EventSettings
) -> tuple[BehaviorState, Transition | None]:
    """The state after one frame captured at ``at``: ``score`` from an inferred frame, None for a gated one (which
    advances time alone). Returns the new state and the transition it made, if any."""
    # A shallow copy is enough (about a third of a deep one's cost): ``recent``, the one mutable field, is replaced
    # below, never changed in place, so ``state`` stays as it was.
    new = state.model_copy()
    if score is not None:
        new.recent = [*new.recent, score][-events.smoothing :]
    smoothed = new.smoothed
    if not new.active:
        if score is None or smoothed is None:
            return new, None
        new.streak = new.streak + 1 if reaches(smoothed, thresholds.enter) else 0
        if new.streak < events.min_frames:
            return new, None
        new.active, new.streak, new.below_since = True, 0, None
        cooled = new.last_started_at is None or at - new.last_started_at >= events.cooldown_s
        if cooled or new.last_event_id is None:
            new.last_started_at = at
            return new, Transition.STARTED  # the caller gives the event its id
        new.event_id = new.last_event_id
        return new, Transition.REOPENED
    if score is not None and smoothed is not None:
        if smoothed < thresholds.exit:
            new.below_since = at if new.below_since is None else new.below_since
        else:
            new.below_since = None
    if new.below_since is not None and at - new.below_since >= events.cutoff_s:
        new.active, new.last_event_id, new.event_id = False, new.event_id, None
        return new, Transition.ENDED
    return new, None
