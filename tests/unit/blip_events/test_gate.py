"""blip_events.gate: thumbnails from a reduced decode, the changed share, and the infer-or-gate decision."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from blip_contract.errors import InvalidInputError
from blip_events import gate
from blip_events.settings import CameraPatch, EventDefaults, GateSettings, ThresholdsPatch
from blip_images.frame import Frame

GATE = GateSettings()


def jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=quality)
    return out.getvalue()


def frame(data: bytes, max_pixels: int = 40_000_000) -> Frame:
    return Frame(data, max_bytes=20 * 2**20, max_pixels=max_pixels)


def scene(width: int = 640, height: int = 360, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(40, 200, width, dtype=np.float32)[None, :, None].repeat(height, 0).repeat(3, 2)
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def test_the_thumbnail_is_luma_at_the_asked_height_with_the_frames_aspect() -> None:
    thumb = gate.thumbnail(frame(jpeg(scene(1920, 1080))), 100)
    assert (thumb.width, thumb.height) == (178, 100) and len(thumb.pixels) == 178 * 100
    assert gate.thumbnail(frame(jpeg(scene(640, 360))), 50).array().shape == (50, 89)


def test_a_1080p_jpeg_is_decoded_at_a_reduced_dct_scale() -> None:
    image = Image.open(io.BytesIO(jpeg(scene(1920, 1080))))
    image.draft("L", (178, 100))
    assert image.size == (240, 135), "1/8 scale: what thumbnail() decodes instead of 1920x1080"


def test_sensor_noise_is_no_change_and_an_object_entering_is() -> None:
    still = scene()
    noisy = np.clip(still.astype(np.int16) + np.random.default_rng(1).normal(0, 4, still.shape), 0, 255).astype(
        np.uint8
    )
    entered = still.copy()
    entered[100:220, 250:370] = 250  # an object about 6% of the frame
    base = gate.thumbnail(frame(jpeg(still)), 100)
    assert gate.changed_fraction(base, gate.thumbnail(frame(jpeg(noisy)), 100), 20) < 0.001
    assert gate.changed_fraction(base, gate.thumbnail(frame(jpeg(entered)), 100), 20) > 0.03
    assert gate.changed_fraction(base, gate.thumbnail(frame(jpeg(scene(320, 240))), 100), 20) is None, "another size"


def test_a_pixel_counts_only_past_pixel_delta_levels() -> None:
    a = gate.Thumbnail(2, 1, bytes([100, 100]))
    assert gate.changed_fraction(a, gate.Thumbnail(2, 1, bytes([120, 100])), 20) == 0.0, "20 levels is not past 20"
    assert gate.changed_fraction(a, gate.Thumbnail(2, 1, bytes([121, 100])), 20) == 0.5


@pytest.mark.parametrize(
    ("kwargs", "infer", "reason"),
    [
        ({"last_inferred_at": None}, True, "first"),
        ({"at": 110.0}, True, "max_age"),  # exactly max_age_s after the last inference
        ({"at": 110.0, "inferred_last_minute": 60}, True, "max_age"),  # max_age passes the budget
        ({"inferred_last_minute": 60, "change": 0.5}, False, "budget"),
        ({"change": None}, True, "rebaseline"),
        ({"change": 0.9}, True, "rebaseline"),
        ({"change": 0.02}, True, "changed"),
        ({"change": 0.01}, False, "unchanged"),  # at the threshold is not over it
        ({"uncertain": True}, True, "uncertain"),
        ({}, False, "unchanged"),
    ],
)
def test_the_decision(kwargs, infer, reason) -> None:
    given = {"at": 109.9, "last_inferred_at": 100.0, "inferred_last_minute": 5, "change": 0.0, "uncertain": False}
    decision = gate.decide(GATE, **(given | kwargs))
    assert (decision.infer, decision.reason) == (infer, reason)


def test_a_score_in_the_uncertainty_band_is_in_doubt() -> None:
    defaults = EventDefaults(thresholds={"barking": 0.5, "eating": 0.5}, questions={"barking": "?", "eating": "?"})
    settings = defaults.resolve(CameraPatch(behaviors={"barking": ThresholdsPatch(enter=0.6)}))
    assert gate.in_doubt(settings, {"barking": 0.5}) and gate.in_doubt(settings, {"barking": 0.7})
    assert not gate.in_doubt(settings, {"barking": 0.49}) and not gate.in_doubt(settings, {"barking": 0.71})
    assert not gate.in_doubt(settings, {"eating": 0.5}), "a behaviour the camera does not watch"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "IMAGE is empty"),
        (b"hello, world", "IMAGE is not an image Pillow can identify"),
        (jpeg(scene())[:2000], "IMAGE could not be decoded"),
    ],
)
def test_a_bad_frame_is_refused_with_the_fleets_own_reason(data, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        gate.thumbnail(frame(data), 100)


def test_a_decompression_bomb_is_refused_before_it_is_decoded() -> None:
    with pytest.raises(InvalidInputError, match=r"the limit is 1000 \(decompression bomb guard\)"):
        gate.thumbnail(frame(jpeg(scene(64, 64)), max_pixels=1000), 10)


def test_the_keyframe_is_a_jpeg_at_most_320_wide_upright_and_on_white() -> None:
    key = Image.open(io.BytesIO(gate.keyframe(frame(jpeg(scene(1920, 1080))))))
    assert key.format == "JPEG" and key.size == (320, 180)
    clear = io.BytesIO()
    Image.new("RGBA", (400, 200), (0, 0, 0, 0)).save(clear, "PNG")
    on_white = Image.open(io.BytesIO(gate.keyframe(frame(clear.getvalue()))))
    assert on_white.size == (320, 160) and min(on_white.convert("L").getdata()) > 240
