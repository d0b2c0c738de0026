"""Encoded image bytes -> an upright RGB picture, or ``InvalidInputError`` saying why not.

Decoding is the reference's (``Image.open`` -> ``ImageOps.exif_transpose`` -> ``convert("RGB")``), guarded against
oversize payloads, decompression bombs, truncated, damaged and unreadable files. The API tier and the fleet's stubs
both decode here, so a bad frame gets the same 400 and the same message wherever it is first read.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

from PIL import Image, ImageOps, UnidentifiedImageError

from blip_contract.errors import InvalidInputError

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


def open_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """The encoded image opened, its size and structure checked, nothing decoded yet: what every decode of a frame
    (full, reduced, luma) starts from. ``InvalidInputError`` names what is wrong."""
    if not data:
        raise InvalidInputError("IMAGE is empty: send the encoded image file (JPEG, PNG, WebP, ...)")
    check_bytes(len(data), max_bytes)
    if data.startswith(_JPEG_SOI):
        check_jpeg_structure(data)
    with _read_errors():
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width < 1 or height < 1:
            raise InvalidInputError(f"IMAGE has an empty canvas ({width}x{height})")
        check_pixels(width, height, max_pixels)
        return image


def check_bytes(size: int, max_bytes: int) -> None:
    """The byte cap of an encoded frame."""
    if size > max_bytes:
        raise InvalidInputError(f"IMAGE is {size} bytes; the limit is {max_bytes} bytes")


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """The pixel cap a frame's header declares, checked before anything is decoded (decompression bombs)."""
    if width * height > max_pixels:
        raise InvalidInputError(
            f"IMAGE declares {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
            "(decompression bomb guard)"
        )


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode one encoded image into an upright RGB picture, or raise ``InvalidInputError`` saying why not.

    ``draft``: let a JPEG decode at a reduced DCT scale (1/2, 1/4, 1/8) that keeps it at least this size; other
    formats ignore it. Without it the pixels are the reference's exactly."""
    image = open_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    with _read_errors():
        if draft is not None:
            image.draft(None, draft)
        image.load()
        # In place: without an orientation tag, exif_transpose would return a full copy of the frame.
        ImageOps.exif_transpose(image, in_place=True)
        return image if image.mode == "RGB" else image.convert("RGB")


def luma(data: bytes, height: int, *, max_bytes: int, max_pixels: int) -> tuple[int, bytes]:
    """The frame's luma ``height`` rows high, width in proportion: (width, row-major bytes). Decoded at the smallest
    DCT scale that holds it, so a 1080p JPEG pays a 1/8-scale decode; the change gate compares these."""
    image = open_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    width = max(1, round(image.size[0] * height / image.size[1]))
    with _read_errors():
        image.draft("L", (width, height))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, still at least this size
        return width, image.convert("L").resize((width, height), Image.Resampling.BOX).tobytes()


def thumbnail_jpeg(data: bytes, width: int, *, max_bytes: int, max_pixels: int, quality: int = 80) -> bytes:
    """A JPEG at most ``width`` pixels wide of the frame, upright, transparency onto white (an event's key frame),
    from a reduced-scale decode."""
    image = open_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    with _read_errors():
        image.draft("RGB", (width, max(1, round(image.size[1] * width / image.size[0]))))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        picture = composite_on_white(image)
        picture.thumbnail((width, width * 4))
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=quality)
        return out.getvalue()


@contextlib.contextmanager
def _read_errors() -> Iterator[None]:
    """Pillow's and the codecs' exceptions as ``InvalidInputError`` naming the fault; ours pass as they are. Pillow's
    warning above its own pixel limit is silenced: ``open_image``'s limit is the one that decides."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
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
