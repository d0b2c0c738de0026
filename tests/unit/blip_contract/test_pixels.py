"""blip_contract.pixels: a fleet's pixel settings survive its config, and a fleet without them is named in one line."""

from __future__ import annotations

import pytest

from blip_contract.pixels import PIXEL_MODEL, FleetSettingsError, PixelSettings, pixel_inputs

SETTINGS = PixelSettings(height=384, width=384, resample=2, fast=True, max_image_bytes=100, max_image_pixels=200)


def test_the_settings_round_trip_through_the_config_parameter() -> None:
    assert PixelSettings.from_parameter(SETTINGS.to_parameter(), "a:1") == SETTINGS
    assert SETTINGS.shape == (384, 384, 3)
    assert [(t.name, t.dtype, t.dims) for t in pixel_inputs(SETTINGS.shape)] == [
        ("PIXELS", "UINT8", (384, 384, 3)),
        ("QUESTIONS", "BYTES", (-1,)),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, rf"^fleet a:1: {PIXEL_MODEL} has no pixel_settings parameter \(a fleet built before pixel input"),
        ("", rf"^fleet a:1: {PIXEL_MODEL} has no pixel_settings parameter"),
        ("{not json", rf"^fleet a:1: {PIXEL_MODEL}.pixel_settings: "),
        (SETTINGS.to_parameter().replace('"fast"', '"fsat"'), r"fsat is not a setting \(did you mean fast\?\)"),
        (SETTINGS.to_parameter().replace('"resample":2', '"resample":9'), r"resample"),
        (SETTINGS.to_parameter().replace('"height":384', '"height":0'), r"height"),
    ],
)
def test_unreadable_settings_are_one_line_naming_the_fleet(value, message) -> None:
    with pytest.raises(FleetSettingsError, match=message) as refused:
        PixelSettings.from_parameter(value, "a:1")
    assert "\n" not in str(refused.value)
