"""An upright picture -> uint8 ``[H, W, 3]`` at the model's input, exactly as the checkpoint's processor resizes.

The steps are those of transformers' ``BlipImageProcessorPil`` up to the resize (transparency onto white, then a
Pillow resize with the processor's filter), from a fleet's ``PixelSettings``; rescale and normalize run inside the
image encoder's artifact. A test holds the result equal to transformers' pixel values on every test image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from blip_contract.pixels import PixelSettings
from blip_images.decode import composite_on_white


class Resizer:
    """One fleet's resize: ``resizer(picture)`` is the artifact's input row."""

    def __init__(self, settings: PixelSettings) -> None:
        self.settings = settings
        self.size = (settings.width, settings.height)
        # fast: Pillow reduces by a whole factor first (box filter) until 2x the output is left for the filter.
        self.reducing_gap = 2.0 if settings.fast else None
        # fast: the JPEG decoder may scale by 1/2, 1/4 or 1/8 while both sides stay at least the input size
        # (square: an EXIF rotation cannot make a side too short).
        side = max(settings.height, settings.width)
        self.draft = (side, side) if settings.fast else None

    def __call__(self, image: Image.Image) -> np.ndarray:
        if self.settings.convert_rgb:
            image = composite_on_white(image)
        if image.size != self.size:
            image = image.resize(self.size, resample=self.settings.resample, reducing_gap=self.reducing_gap)
        pixels = np.asarray(image)
        if pixels.shape != self.settings.shape:
            raise RuntimeError(f"the resize produced {pixels.shape}, the model takes {self.settings.shape}")
        return pixels
