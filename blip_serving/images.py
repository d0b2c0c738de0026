"""Image bytes -> pixel values, exactly as the checkpoint's own image processor does it.

Decoding is the same as the reference (``Image.open`` -> ``ImageOps.exif_transpose`` -> ``convert("RGB")``), guarded
against oversize payloads, decompression bombs, truncated and unreadable files. Resizing and normalization are
the checkpoint's own ``BlipImageProcessor``, loaded from the artifacts, so they cannot drift from it.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from blip_serving.errors import InvalidInputError


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode one encoded image into an upright RGB picture, or raise ``InvalidInputError`` saying why not."""
    if not data:
        raise InvalidInputError("IMAGE is empty: send the encoded image file (JPEG, PNG, WebP, ...)")
    if len(data) > max_bytes:
        raise InvalidInputError(f"IMAGE is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own pixel limit; our own limit below is the one that decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width < 1 or height < 1:
                raise InvalidInputError(f"IMAGE has an empty canvas ({width}x{height})")
            if width * height > max_pixels:
                raise InvalidInputError(
                    f"IMAGE declares {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
                    "(decompression bomb guard)"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except InvalidInputError:
        raise
    except UnidentifiedImageError as error:
        raise InvalidInputError(
            "IMAGE is not an image Pillow can identify (unknown format or corrupt header)"
        ) from error
    except Image.DecompressionBombError as error:
        raise InvalidInputError(f"IMAGE is a decompression bomb: {error}") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InvalidInputError(f"IMAGE could not be decoded: {error}") from error


class ImagePreprocessor:
    """The checkpoint's image processor, checked against the spec's static input shape."""

    def __init__(self, image_processor: Any, expected_shape: tuple[int, int, int]) -> None:
        self.image_processor = image_processor
        self.expected_shape = expected_shape

    def __call__(self, images: list[Image.Image]) -> Any:
        pixel_values = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        if tuple(pixel_values.shape[1:]) != self.expected_shape:
            raise RuntimeError(
                f"image processor produced {tuple(pixel_values.shape[1:])}, the artifact takes {self.expected_shape}"
            )
        return pixel_values
