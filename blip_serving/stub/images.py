"""Image bytes -> resized uint8 pixels, exactly as the checkpoint's own image processor resizes them.

Decoding is the same as the reference (``Image.open`` -> ``ImageOps.exif_transpose`` -> ``convert("RGB")``), guarded
against oversize payloads, decompression bombs, truncated and unreadable files. Resizing follows the checkpoint's
saved image processor settings with the steps of transformers' ``BlipImageProcessorPil`` (PIL resize) without
importing transformers into the stub (about 100 MiB per process); rescale and normalize run inside the image
encoder's artifact. A test holds the result equal to transformers' pixel values on every test image.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
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


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode one encoded image into an upright RGB picture, or raise ``InvalidInputError`` saying why not.

    ``draft``: let a JPEG decode at a reduced DCT scale (1/2, 1/4, 1/8) that keeps it at least this size; other
    formats ignore it. Without it the pixels are the reference's exactly."""
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
            if draft is not None:
                image.draft(None, draft)
            image.load()
            # In place: without an orientation tag, exif_transpose would return a full copy of the frame.
            ImageOps.exif_transpose(image, in_place=True)
            return image if image.mode == "RGB" else image.convert("RGB")
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


def composite_on_white(image: Image.Image) -> Image.Image:
    """transformers' ``convert_to_rgb``: transparency (an alpha band, or a ``transparency`` entry that survives
    ``convert("RGB")`` of a palette image) is composited onto white; anything else is converted as it is."""
    if "A" not in image.getbands() and image.info.get("transparency") is None:
        return image if image.mode == "RGB" else image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


class ImagePreprocessor:
    """The checkpoint's image processor settings up to the resize, with PIL: one picture -> uint8 [H, W, C].

    Rescale and normalize are the image encoder artifact's (``blip_build.traceable.ImageEncoder``): the spec
    carries the processor's factors into its graph, so the host stops at the resized uint8 frame.
    """

    _SUPPORTED = frozenset({"BlipImageProcessor", "BlipImageProcessorPil"})

    def __init__(self, settings: dict[str, Any], expected_shape: tuple[int, int, int], fast: bool = False) -> None:
        kind = settings.get("image_processor_type", "BlipImageProcessor")
        if kind not in self._SUPPORTED:
            raise ValueError(f"image processor {kind} is not supported; expected one of {sorted(self._SUPPORTED)}")
        if settings.get("do_center_crop") or settings.get("do_pad"):
            raise ValueError("image processor settings ask for center crop or padding, which BLIP does not use")
        size = settings.get("size", {})
        self.size = (int(size["width"]), int(size["height"])) if settings.get("do_resize", True) else None
        self.resample = int(settings.get("resample", Image.Resampling.BICUBIC))
        self.convert_rgb = settings.get("do_convert_rgb", True)
        self.expected_shape = expected_shape  # (height, width, channels)
        # fast: Pillow reduces by a whole factor first (box filter) until 2x the output is left for the bicubic pass.
        self.reducing_gap = 2.0 if fast else None

    @classmethod
    def from_directory(
        cls, processor_dir: Path, expected_shape: tuple[int, int, int], fast: bool = False
    ) -> ImagePreprocessor:
        """Settings from ``processor_config.json`` (``image_processor``) or ``preprocessor_config.json``."""
        combined, alone = processor_dir / "processor_config.json", processor_dir / "preprocessor_config.json"
        if combined.is_file() and "image_processor" in (data := json.loads(combined.read_text())):
            return cls(data["image_processor"], expected_shape, fast)
        if alone.is_file():
            return cls(json.loads(alone.read_text()), expected_shape, fast)
        raise FileNotFoundError(f"no image processor settings in {processor_dir}")

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One RGB picture -> uint8 [H, W, C], the artifact's input row."""
        if self.convert_rgb:
            image = composite_on_white(image)
        if self.size is not None:
            image = image.resize(self.size, resample=self.resample, reducing_gap=self.reducing_gap)
        pixels = np.asarray(image)
        if pixels.shape != self.expected_shape:
            raise RuntimeError(f"image processor produced {pixels.shape}, the artifact takes {self.expected_shape}")
        return pixels
