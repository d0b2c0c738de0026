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

_JPEG_SOI = b"\xff\xd8"
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length
_JPEG_SOS = 0xDA


def check_jpeg_structure(data: bytes) -> None:
    """Walk a JPEG's marker segments up to the scan; junk between segments means a corrupt file.

    libjpeg only warns about such bytes ("extraneous bytes before marker") and decodes on, so Pillow would
    accept a damaged frame silently; a camera frame that is damaged is refused instead.
    """
    position = len(_JPEG_SOI)
    while position < len(data):
        if data[position] != 0xFF:
            end = data.find(b"\xff", position)
            junk = (end if end != -1 else len(data)) - position
            raise InvalidInputError(f"IMAGE is a corrupt JPEG: {junk} junk bytes before a marker at offset {position}")
        while position < len(data) and data[position] == 0xFF:  # fill bytes
            position += 1
        if position >= len(data):
            break
        marker = data[position]
        position += 1
        if marker in _JPEG_STANDALONE:
            continue
        if position + 2 > len(data):
            break
        length = int.from_bytes(data[position : position + 2], "big")
        if length < 2:
            raise InvalidInputError(f"IMAGE is a corrupt JPEG: segment 0x{marker:02X} has length {length}")
        if marker == _JPEG_SOS:
            return
        position += length
    raise InvalidInputError("IMAGE is a truncated JPEG: it ends before the image data")


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode one encoded image into an upright RGB picture, or raise ``InvalidInputError`` saying why not."""
    if not data:
        raise InvalidInputError("IMAGE is empty: send the encoded image file (JPEG, PNG, WebP, ...)")
    if len(data) > max_bytes:
        raise InvalidInputError(f"IMAGE is {len(data)} bytes; the limit is {max_bytes} bytes")
    if data.startswith(_JPEG_SOI):
        check_jpeg_structure(data)
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
