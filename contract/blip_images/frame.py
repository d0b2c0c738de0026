"""One camera frame as the API tier holds it: its bytes, checked once, decoded at most once per scale.

``Frame.pixels(settings)`` decodes it at the scale the fleet a request is routed to needs (full, or a ``fast``
fleet's reduced DCT scale) and resizes it with that fleet's settings, before the fleet is called, so a bad frame
gets the fleet's own 400 without costing the fleet anything. Each decode and each resize happens once per frame: a
failover to a fleet with other settings resizes the same picture again. The change gate's luma and an
event's key frame come from reduced-scale decodes of the same bytes, with the same checks.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from blip_contract import DEFAULT_MAX_IMAGE_PIXELS
from blip_contract.pixels import PixelSettings
from blip_images.decode import decode_image, luma, open_image, thumbnail_jpeg
from blip_images.resize import Resizer


@functools.lru_cache(maxsize=16)
def resizer(settings: PixelSettings) -> Resizer:
    """One ``Resizer`` per distinct fleet settings (a handful in a deployment)."""
    return Resizer(settings)


class Frame:
    """A frame's bytes and what has been decoded of them; not shared between requests."""

    def __init__(self, data: bytes, *, max_bytes: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
        self.data = data
        self.max_bytes, self.max_pixels = max_bytes, max_pixels
        self._pictures: dict[tuple[int, int] | None, Image.Image] = {}
        self._pixels: dict[PixelSettings, np.ndarray] = {}

    def picture(self, draft: tuple[int, int] | None = None) -> Image.Image:
        """The upright RGB picture, at full scale or at the reduced DCT scale ``draft`` allows (JPEG only)."""
        if draft not in self._pictures:
            self._pictures[draft] = decode_image(
                self.data, max_bytes=self.max_bytes, max_pixels=self.max_pixels, draft=draft
            )
        return self._pictures[draft]

    def pixels(self, settings: PixelSettings) -> np.ndarray:
        """uint8 ``[H, W, 3]`` for a fleet with ``settings``, bit for bit what its stub would make of the bytes."""
        if settings not in self._pixels:
            # The fleet's own limits too: a frame it would refuse is refused here with its message.
            # Its header read again, not decoded: the byte and pixel caps are the fleet's own.
            open_image(self.data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
            resize = resizer(settings)
            self._pixels[settings] = resize(self.picture(resize.draft))
        return self._pixels[settings]

    def luma(self, height: int) -> tuple[int, bytes]:
        """(width, bytes) of the frame's luma at ``height`` rows, from a reduced-scale decode (the change gate's)."""
        return luma(self.data, height, max_bytes=self.max_bytes, max_pixels=self.max_pixels)

    def keyframe(self, width: int) -> bytes:
        """A JPEG at most ``width`` wide (an event's key frame), from a reduced-scale decode."""
        return thumbnail_jpeg(self.data, width, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
