"""blip_images.frame: what the API tier makes of a frame is bit for bit what a fleet's stub makes of its bytes, a
bad frame is refused with the fleet's own message, and a frame is decoded at most once at full scale."""

from __future__ import annotations

import numpy as np
import pytest

from blip_bench.corpus import camera_frame
from blip_contract.errors import InvalidInputError
from blip_contract.pixels import PixelSettings
from blip_images.decode import decode_image
from blip_images.frame import Frame
from blip_images.resize import Resizer
from tests.conftest import INVALID_IMAGES, VALID_IMAGES

LIMITS = {"max_bytes": 20 * 2**20, "max_pixels": 40_000_000}
EXACT = PixelSettings(height=384, width=384, max_image_bytes=LIMITS["max_bytes"], max_image_pixels=LIMITS["max_pixels"])
FAST = EXACT.model_copy(update={"fast": True})
SMALL = EXACT.model_copy(update={"height": 48, "width": 64, "resample": 2})


def stub_pixels(data: bytes, settings: PixelSettings) -> np.ndarray:
    """What a stub does with an encoded IMAGE (blip_serving.stub.models.ImageEncoderModel.prepare)."""
    resize = Resizer(settings)
    return resize(decode_image(data, **LIMITS, draft=resize.draft))


@pytest.mark.parametrize("path", VALID_IMAGES, ids=lambda p: p.name)
def test_the_api_tiers_pixels_are_the_stubs_bit_for_bit(path) -> None:
    data = path.read_bytes()
    frame = Frame(data, **LIMITS)
    frame.picture()
    for settings in (EXACT, FAST, SMALL):
        assert np.array_equal(frame.pixels(settings), stub_pixels(data, settings)), settings


def test_camera_frames_too_at_both_sizes() -> None:
    for width, height in ((1920, 1080), (640, 360)):
        data = camera_frame(width, height)
        for settings in (EXACT, FAST):
            assert np.array_equal(Frame(data, **LIMITS).pixels(settings), stub_pixels(data, settings))


@pytest.mark.parametrize("path", INVALID_IMAGES, ids=lambda p: p.name)
def test_a_bad_frame_is_refused_with_the_message_the_fleet_gives(path) -> None:
    data = path.read_bytes()
    with pytest.raises(InvalidInputError) as fleet:
        decode_image(data, **LIMITS)
    with pytest.raises(InvalidInputError) as ours:
        Frame(data, **LIMITS).picture()
    assert str(ours.value) == str(fleet.value) and str(ours.value).startswith("IMAGE ")


def test_a_frame_is_decoded_once_at_full_scale_and_resized_once_per_fleet_settings() -> None:
    frame = Frame(camera_frame(1920, 1080), **LIMITS)
    exact = frame.pixels(EXACT)
    assert frame.pixels(EXACT) is exact, "the same fleet settings: no second resize"
    assert frame.pixels(SMALL).shape == (48, 64, 3), "a failover to a fleet with other settings resizes again"
    assert list(frame._pictures) == [None], "both from the one full-scale decode"
    frame.pixels(FAST)
    assert list(frame._pictures) == [None, (384, 384)], "a fast fleet's JPEG: a reduced-scale decode, not full"
    assert frame._pictures[(384, 384)].size == (960, 540)
    fast_only = Frame(camera_frame(1920, 1080), **LIMITS)
    fast_only.pixels(FAST)
    assert list(fast_only._pictures) == [(384, 384)], "a frame routed to fast fleets alone is never decoded in full"


def test_the_fleets_own_limits_hold_for_its_pixels() -> None:
    data = camera_frame(640, 360)
    frame = Frame(data, **LIMITS)
    frame.picture()
    with pytest.raises(InvalidInputError, match=rf"^IMAGE is {len(data)} bytes; the limit is 1000 bytes$"):
        frame.pixels(EXACT.model_copy(update={"max_image_bytes": 1000}))
    with pytest.raises(InvalidInputError, match=r"^IMAGE declares 640x360 = 230400 pixels; the limit is 1000 "):
        frame.pixels(EXACT.model_copy(update={"max_image_pixels": 1000}))
    with pytest.raises(InvalidInputError, match=r"^IMAGE is \d+ bytes; the limit is 100 bytes$"):
        Frame(data, max_bytes=100).picture()
