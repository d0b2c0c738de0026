"""Hypothesis strategies for hostile image and question bytes, shared by the in-process and the served tiers.

Images start from small valid seeds in every format Pillow can write here (and the test corpus), then get
mutated the ways damaged or hostile uploads are: cut short, bits flipped, another format's header swapped in,
absurd canvas sizes declared in the header, random bytes behind a real magic number, or plain random bytes.
Every draw is deterministic under ``derandomize=True``: the suites run with fixed seeds.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache

from hypothesis import strategies as st
from PIL import Image, features

from tests.conftest import VALID_IMAGES

# Headers a hostile client may borrow: each a format Pillow identifies by its first bytes.
MAGIC = (
    b"\xff\xd8\xff\xe0",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"P6\n",
    b"\x00\x00\x01\x00",
    b"8BPS",
    b"qoif",
    b"\x97JB2",
)


@cache
def seed_images() -> tuple[bytes, ...]:
    """One small valid file per format Pillow saves here, plus the corpus's smaller files."""
    picture = Image.new("RGB", (24, 16))
    picture.putdata([(x * 10 % 256, y * 15 % 256, (x * y) % 256) for y in range(16) for x in range(24)])
    formats = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "PPM", "ICO", "TGA", "PCX", "SGI", "IM", "DDS", "QOI"]
    if features.check("webp"):
        formats.append("WEBP")
    seeds = []
    for fmt in formats:
        buffer = io.BytesIO()
        try:
            picture.save(buffer, format=fmt)
        except (KeyError, OSError, ValueError):
            continue  # this Pillow cannot write it; the corpus and the header swaps still reach its decoder
        seeds.append(buffer.getvalue())
    seeds += [p.read_bytes() for p in VALID_IMAGES if p.stat().st_size <= 64 * 1024]
    return tuple(seeds)


def _declare_size(data: bytes, width: int, height: int) -> bytes:
    """The same file with a different canvas size in its header, where the format has one we know."""
    if data.startswith(b"\x89PNG") and data[12:16] == b"IHDR":
        header = struct.pack(">II", width, height) + data[24:29]
        return data[:16] + header + struct.pack(">I", zlib.crc32(b"IHDR" + header)) + data[33:]
    if data.startswith(b"GIF8"):
        return data[:6] + struct.pack("<HH", width & 0xFFFF, height & 0xFFFF) + data[10:]
    if data.startswith(b"BM") and len(data) >= 26:
        return data[:18] + struct.pack("<ii", width & 0x7FFFFFFF, height & 0x7FFFFFFF) + data[26:]
    if data.startswith(b"\xff\xd8"):
        at = data.find(b"\xff\xc0")
        if at != -1 and at + 9 <= len(data):
            return data[: at + 5] + struct.pack(">HH", height & 0xFFFF, width & 0xFFFF) + data[at + 9 :]
    return data


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid seed damaged one or more ways."""
    data = bytearray(draw(st.sampled_from(seed_images())))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["truncate", "flip", "swap_header", "declare_size", "splice"]))
        if how == "truncate" and len(data) > 1:
            del data[draw(st.integers(1, len(data) - 1)) :]
        elif how == "flip" and data:
            for _ in range(draw(st.integers(1, 8))):
                at = draw(st.integers(0, len(data) - 1))
                data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "swap_header":
            magic = draw(st.sampled_from(MAGIC))
            data[: len(magic)] = magic
        elif how == "declare_size":
            side = st.sampled_from([0, 1, 65535, 100_000, 2**31 - 1]) | st.integers(0, 70_000)
            data = bytearray(_declare_size(bytes(data), draw(side), draw(side)))
        elif how == "splice" and data:
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def hostile_images() -> st.SearchStrategy[bytes]:
    """Mutated images, random bytes behind a real magic number, and plain random bytes."""
    behind_magic = st.builds(lambda m, rest: m + rest, st.sampled_from(MAGIC), st.binary(max_size=512))
    return st.one_of(mutated_images(), behind_magic, st.binary(max_size=1024))


def hostile_questions() -> st.SearchStrategy[list[str | bytes]]:
    """Question lists as the wire may carry them: random Unicode (surrogates excluded: they cannot be UTF-8
    encoded by any client), random bytes (often not UTF-8), blanks, and long ones."""
    one = st.one_of(
        st.text(max_size=300),
        st.binary(max_size=300),
        st.sampled_from(["", " ", "\t\n", "\x00", "\u200b", "Is the dog barking?" * 40]),
    )
    return st.lists(one, min_size=0, max_size=20)
