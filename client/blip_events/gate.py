"""The change gate: a small luma thumbnail per frame, compared with the last inferred frame's, decides whether the
fleet is asked at all.

The thumbnail comes from a reduced DCT-scale decode of the frame (``blip_images.frame.Frame.luma``, Pillow's
``Image.draft``: a 1920x1080 JPEG decodes at 1/8 scale, 240x135, before the resize), so a gated 1080p frame never
pays a full decode; an inferred one is decoded at full scale once, for the fleet's pixels. As Frigate does with its
100 px greyscale frame, a pixel counts as changed when its luma moves by more than ``pixel_delta`` levels; unlike
Frigate, the baseline is the last *inferred* frame, so that a slow drift still reaches the model once it adds up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blip_contract import reaches
from blip_events.settings import CameraSettings, GateSettings
from blip_images.frame import Frame

KEYFRAME_WIDTH = 320


@dataclass(frozen=True)
class Thumbnail:
    """A frame's luma at ``height`` rows: what the gate compares and the store keeps per camera."""

    width: int
    height: int
    pixels: bytes

    def array(self) -> np.ndarray:
        return np.frombuffer(self.pixels, dtype=np.uint8).reshape(self.height, self.width)


def thumbnail(frame: Frame, height: int) -> Thumbnail:
    """The frame's luma, ``height`` rows high (width in proportion), from the smallest DCT scale that holds it. A
    bad frame is ``InvalidInputError`` with the message a fleet would give."""
    width, pixels = frame.luma(height)
    return Thumbnail(width, height, pixels)


def changed_fraction(before: Thumbnail, after: Thumbnail, pixel_delta: int) -> float | None:
    """The share of pixels whose luma moved by more than ``pixel_delta``; None when the sizes differ (the camera's
    resolution or aspect changed: the baseline no longer applies)."""
    if (before.width, before.height) != (after.width, after.height):
        return None
    delta = np.abs(before.array().astype(np.int16) - after.array().astype(np.int16))
    return float(np.count_nonzero(delta > pixel_delta)) / delta.size


@dataclass(frozen=True)
class Decision:
    infer: bool
    reason: str  # first | max_age | budget | rebaseline | changed | uncertain | unchanged


def decide(
    gate: GateSettings,
    *,
    at: float,
    last_inferred_at: float | None,
    inferred_last_minute: int,
    change: float | None,
    uncertain: bool,
) -> Decision:
    """Infer or gate one frame. ``max_age_s`` always infers; over the budget nothing else does; otherwise a whole-
    scene change, a changed share over the threshold, or a score in doubt infers."""
    if last_inferred_at is None:
        return Decision(True, "first")
    if at - last_inferred_at >= gate.max_age_s:
        return Decision(True, "max_age")
    if inferred_last_minute >= gate.budget_per_minute:
        return Decision(False, "budget")
    if change is None or change > gate.rebaseline_fraction:
        return Decision(True, "rebaseline")
    if change > gate.changed_fraction:
        return Decision(True, "changed")
    if uncertain:
        return Decision(True, "uncertain")
    return Decision(False, "unchanged")


def in_doubt(settings: CameraSettings, smoothed: dict[str, float]) -> bool:
    """Whether any watched behaviour's smoothed score is within the uncertainty band of its enter threshold: where
    the answer is in doubt, the model is worth its cost."""
    band = settings.gate.uncertainty
    for name, thresholds in settings.behaviors.items():
        score = smoothed.get(name)
        if score is not None and reaches(score, thresholds.enter - band) and score <= thresholds.enter + band:
            return True
    return False


def keyframe(frame: Frame, width: int = KEYFRAME_WIDTH) -> bytes:
    """A JPEG at most ``width`` pixels wide of the frame, upright, transparency onto white: an event's key frame."""
    return frame.keyframe(width)
