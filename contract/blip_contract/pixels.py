"""The pixel form of a frame: what a fleet takes when the API tier has decoded and resized the frame itself.

A fleet serves ``blip_vqa_pixels`` beside ``blip_vqa``: the same questions, outputs and request parameters, with
PIXELS (uint8 ``[1, H, W, 3]``, the frame already resized exactly as the checkpoint's processor resizes) in place of
the encoded IMAGE. Triton's ensembles cannot take optional inputs, so the two forms are two public model names on
both layouts and every target, not one model with either input.

How to resize for a fleet is the fleet's to say: its ``blip_vqa_pixels`` config carries one ``PixelSettings``
record in its ``pixel_settings`` parameter (written by ``blip_serving.model_config``, read by
``blip_client.async_client`` when it connects), so the API tier never holds a copy of a checkpoint's processor.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError

from blip_contract import QUESTIONS, TensorSpec
from blip_contract.records import PositiveInteger, Strict, one_line

PIXEL_MODEL = "blip_vqa_pixels"
PIXELS = "PIXELS"
PIXEL_SETTINGS = "pixel_settings"  # the config parameter of PIXEL_MODEL that holds the record below

# Pillow's resampling filters by their enum values (Image.Resampling), as a checkpoint's processor stores them.
RESAMPLING = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class FleetSettingsError(ValueError):
    """A fleet's pixel settings are missing or unreadable: the message is one line naming the fleet."""


class PixelSettings(Strict):
    """How a fleet's frames are decoded and resized: the checkpoint processor's steps up to the resize, and the
    limits the fleet holds an encoded frame to. Rescale and normalize run inside the image encoder's artifact."""

    height: PositiveInteger = Field(description="The model's input height in pixels.")
    width: PositiveInteger = Field(description="The model's input width in pixels.")
    channels: Literal[3] = 3
    resample: Literal[0, 1, 2, 3, 4, 5] = Field(3, description="Pillow's filter (3: bicubic), the processor's own.")
    convert_rgb: bool = Field(True, description="Transparency onto white before the resize, as transformers does.")
    fast: bool = Field(False, description="JPEG decoded at a reduced DCT scale, a box reduction before the filter.")
    max_image_bytes: PositiveInteger = Field(description="The largest encoded frame the fleet takes.")
    max_image_pixels: PositiveInteger = Field(description="The most pixels a frame may declare (bomb guard).")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def to_parameter(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_parameter(cls, value: object, fleet: str) -> PixelSettings:
        """From the ``pixel_settings`` string of a fleet's model config; ``FleetSettingsError`` in one line."""
        if not isinstance(value, str) or not value:
            raise FleetSettingsError(
                f"fleet {fleet}: {PIXEL_MODEL} has no {PIXEL_SETTINGS} parameter (a fleet built before pixel input: "
                "rebuild its repository with make build-artifacts)"
            )
        try:
            return cls.model_validate_json(value)
        except ValidationError as error:
            raise FleetSettingsError(one_line(error, f"fleet {fleet}: {PIXEL_MODEL}.{PIXEL_SETTINGS}", cls)) from None


def pixel_inputs(settings_shape: tuple[int, int, int] | None = None) -> tuple[TensorSpec, ...]:
    """PIXEL_MODEL's inputs, batch dimension left out: PIXELS at the fleet's exact shape where known, and QUESTIONS."""
    dims = settings_shape or (-1, -1, 3)
    return (TensorSpec(PIXELS, "UINT8", dims), TensorSpec(QUESTIONS, "BYTES", (-1,)))
