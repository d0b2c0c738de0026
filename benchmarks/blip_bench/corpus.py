"""The image corpus the project makes itself (tests, soak, GPU check), so nothing beside the clone is needed.

Every file is generated with Pillow from the committed sample photo (``client/samples/chelsea.png``) or from a
seeded generator, so the set is small and the same on every machine. Valid ones cover what a camera or a user
may send: EXIF-rotated, CMYK and grayscale JPEGs, a 16-bit PNG, a palette PNG with transparency, WebP, animated
GIF and PNG, BMP and TIFF, and one photo larger than the API tests' body limit. Invalid ones are the cases the
boundary must name: truncated JPEG, junk after the JPEG's start or between its segments (which Pillow decodes
silently), a decompression-bomb header, zero bytes, text.
Camera frames (``camera/``) are 16:9 JPEGs at 1920x1080, 1280x720 and 640x360, upright and EXIF-rotated.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from blip_bench.frames import SAMPLE


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring 10^10 pixels, with one tiny compressed row: what a decompression bomb sends."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def valid_images(photo: Image.Image) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    small = photo.resize((96, 72))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to view
    gray16 = Image.fromarray(np.asarray(small.convert("L"), dtype=np.uint16) * 257)  # mode I;16
    palette = small.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    frames = [small.rotate(angle) for angle in (0, 15, 30)]
    noise = Image.fromarray(rng.integers(0, 256, (400, 400, 3), dtype=np.uint8))
    return {
        "photo.jpg": _save(photo, "JPEG", quality=90),
        "photo_exif_orientation_6.jpg": _save(photo.resize((160, 120)), "JPEG", quality=90, exif=exif),
        "photo_cmyk.jpg": _save(small.convert("CMYK"), "JPEG", quality=90),
        "photo_gray.jpg": _save(small.convert("L"), "JPEG", quality=90),
        "photo_16bit.png": _save(gray16, "PNG"),
        "photo_palette_transparent.png": _save(palette, "PNG", transparency=0),
        "photo_rgba.png": _save(small.convert("RGBA"), "PNG"),
        "photo.webp": _save(small, "WEBP", quality=80),
        "photo_animated.gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "photo_animated.png": _save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100),
        "photo.bmp": _save(small, "BMP"),
        "photo.tiff": _save(small, "TIFF"),
        # Incompressible pixels: about 200 kB, over the API tests' 150 kB body limit.
        "noise_large.jpg": _save(noise, "JPEG", quality=95),
    }


def _jpeg_segment_starts(jpeg: bytes) -> list[int]:
    """Offsets of the marker segments between SOI and the scan (each ``FF xx`` plus a two-byte length)."""
    starts, position = [], 2
    while jpeg[position + 1] != 0xDA:
        starts.append(position)
        position += 2 + int.from_bytes(jpeg[position + 2 : position + 4], "big")
    return starts


def invalid_images(photo_jpeg: bytes) -> dict[str, bytes]:
    third = _jpeg_segment_starts(photo_jpeg)[2]
    return {
        "truncated_jpeg.jpg": photo_jpeg[: len(photo_jpeg) // 2],
        "junk_jpeg_header.jpg": photo_jpeg[:2] + b"this is not a marker" + photo_jpeg[2:],
        # Pillow decodes this one without a word (libjpeg skips the bytes): only the project's own walk refuses it.
        "junk_between_jpeg_segments.jpg": photo_jpeg[:third] + b"junk!" + photo_jpeg[third:],
        "decompression_bomb.png": _bomb_png(),
        "zero_bytes.jpg": b"",
        "text.txt": b"Is the dog barking? This is text, not an image.\n",
        "random_bytes.bin": np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }


# What a pet camera sends: 16:9 JPEG frames at 1080p, 720p and 360p.
CAMERA_SIZES = ((1920, 1080), (1280, 720), (640, 360))


def camera_frames(photo: Image.Image) -> dict[str, bytes]:
    """16:9 JPEG frames (quality 85) from the sample photo, with seeded sensor noise so that they compress like
    camera frames (about 50 KiB at 640x360, 300 KiB at 1920x1080); each size also stored sideways with EXIF
    orientation 6, as a camera mounted on its side writes it."""
    rng = np.random.default_rng(2)
    width, height = photo.size
    crop = photo.crop((0, (height - width * 9 // 16) // 2, width, (height + width * 9 // 16) // 2))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to view
    frames = {}
    for size in CAMERA_SIZES:
        pixels = np.asarray(crop.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
        noisy = np.clip(pixels + rng.normal(0.0, 6.0, pixels.shape), 0, 255).astype(np.uint8)
        frame = Image.fromarray(noisy)
        name = f"frame_{size[0]}x{size[1]}"
        frames[f"{name}.jpg"] = _save(frame, "JPEG", quality=85)
        # Stored 90 degrees counter-clockwise: orientation 6 turns it back upright.
        frames[f"{name}_exif6.jpg"] = _save(frame.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=85, exif=exif)
    return frames


def camera_frame(width: int, height: int) -> bytes:
    """One upright camera frame of the corpus, by its size."""
    return (generated_images() / "camera" / f"frame_{width}x{height}.jpg").read_bytes()


def generated_images() -> Path:
    """Write the set once per generator version (under the temp dir) and return its folder."""
    version = hashlib.sha256(inspect.getsource(inspect.getmodule(generated_images)).encode()).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / f"blip-test-images-{os.getuid()}-{version}"
    if (root / "complete").is_file():
        return root
    photo = Image.open(SAMPLE).convert("RGB")
    valid = valid_images(photo)
    sets = {"valid": valid, "invalid": invalid_images(valid["photo.jpg"]), "camera": camera_frames(photo)}
    staging = Path(tempfile.mkdtemp(prefix="blip-test-images-"))
    for kind, files in sets.items():
        (staging / kind).mkdir()
        for name, data in files.items():
            (staging / kind / name).write_bytes(data)
    (staging / "complete").write_text("")
    with contextlib.suppress(OSError):  # another process won the race; its set is the same
        staging.rename(root)
    return root


def corpus_images(limit: int = 0) -> list[Path]:
    """The sample photo, then the generated valid images (every format and mode the server takes); ``limit``: the
    first N only (0: all)."""
    return [SAMPLE, *sorted((generated_images() / "valid").iterdir())][: limit or None]
