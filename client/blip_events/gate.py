"""The change gate: a small luma thumbnail per frame, compared with the last inferred frame's, decides whether the
fleet is asked at all.

The thumbnail comes from a reduced DCT-scale decode (Pillow's ``Image.draft``: a 1920x1080 JPEG decodes at 1/8
scale, 240x135, before the resize), so a gated 1080p frame never pays a full decode. As Frigate does with its
100 px greyscale frame, a pixel counts as changed when its luma moves by more than ``pixel_delta`` levels; unlike
Frigate, the baseline is the last *inferred* frame, so that a slow drift still reaches the model once it adds up.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from blip_contract import DEFAULT_MAX_IMAGE_PIXELS, reaches
from blip_events.settings import CameraSettings, GateSettings

KEYFRAME_WIDTH = 320


class BadFrame(ValueError):
    """The frame is not an image the gate can read; the message says why (the API answers 400)."""


@dataclass(frozen=True)
class Thumbnail:
    """A frame's luma at ``height`` rows: what the gate compares and the store keeps per camera."""

    width: int
    height: int
    pixels: bytes

    def array(self) -> np.ndarray:
        return np.frombuffer(self.pixels, dtype=np.uint8).reshape(self.height, self.width)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadFrame(f"the frame is not a readable image: {error}") from None
    width, height = image.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise BadFrame(f"the frame is {width}x{height} pixels; at most {max_pixels} pixels are read")
    return image


def thumbnail(data: bytes, height: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Thumbnail:
    """The frame's luma, ``height`` rows high (width in proportion), decoded at the smallest DCT scale that holds
    it. A truncated or unreadable file is ``BadFrame``."""
    image = _open(data, max_pixels)
    width = max(1, round(image.size[0] * height / image.size[1]))
    try:
        image.draft("L", (width, height))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, still at least this size
        luma = image.convert("L").resize((width, height), Image.Resampling.BOX)
    except (OSError, ValueError) as error:
        raise BadFrame(f"the frame could not be decoded: {error}") from None
    return Thumbnail(width, height, luma.tobytes())


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


def keyframe(data: bytes, width: int = KEYFRAME_WIDTH, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> bytes:
    """A JPEG at most ``width`` pixels wide of the frame, upright, transparency onto white: an event's key frame."""
    image = _open(data, max_pixels)
    target = (width, max(1, round(image.size[1] * width / image.size[0])))
    try:
        image.draft("RGB", target)
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "P", "PA"):
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        image = image.convert("RGB")
        image.thumbnail((width, width * 4))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=80)
    except (OSError, ValueError) as error:
        raise BadFrame(f"the frame could not be decoded: {error}") from None
    return out.getvalue()
