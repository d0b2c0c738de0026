"""Camera clips: JPEG frame sequences with capture times, replayed through the API tier's camera routes by
``make demo``, the tests and ``make bench-events``.

Two sources. Made ones (``made_clips``), from one still photo (the checkout's sample), each with the frames where
its scene changes, so that a test or a benchmark can say how late the gate was:
- ``static-noise``: a fixed scene with sensor noise (sigma 3 levels) and JPEG re-encoding, nothing else;
- ``lighting``: a static stretch, then the room's light drops to 55% at once, then back;
- ``object-enters``: a static stretch, then a dark shape the size of a pet enters, crosses and leaves.
And real fixed-camera footage (``shared_clips``: a folder of ``<name>/`` folders of JPEGs at 2 frames/s, frame times
in ``clip.json``, such as the workplace's ``../shared/clips``), which carries no change labels.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

FPS = 2.0


@dataclass(frozen=True)
class Clip:
    """Frames at their capture times (seconds from the clip's start); ``changes``: frame indexes where the scene
    changes (empty where unknown)."""

    name: str
    times: list[float]
    frames: list[bytes]
    changes: list[int] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)


def _scene(photo: Path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(photo) as image:
        return np.asarray(image.convert("RGB").resize(size, Image.Resampling.BICUBIC), dtype=np.float32)


def _jpeg(pixels: np.ndarray, rng: np.random.Generator, noise: float = 3.0) -> bytes:
    noisy = np.clip(pixels + rng.normal(0.0, noise, pixels.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, "JPEG", quality=85)
    return out.getvalue()


def static_noise(photo: Path, seconds: float = 60.0, size: tuple[int, int] = (640, 360), seed: int = 0) -> Clip:
    rng, base = np.random.default_rng(seed), _scene(photo, size)
    count = int(seconds * FPS)
    return Clip("static-noise", [i / FPS for i in range(count)], [_jpeg(base, rng) for _ in range(count)], [], size)


def lighting(photo: Path, size: tuple[int, int] = (640, 360), seed: int = 1) -> Clip:
    """21.5 s lit, 7.5 s at 55% light, 11 s lit again: two whole-scene changes (off the max_age_s beat)."""
    rng, base = np.random.default_rng(seed), _scene(photo, size)
    frames, count, dim_from, dim_to = [], int(40 * FPS), 43, 58
    for index in range(count):
        frames.append(_jpeg(base * 0.55 if dim_from <= index < dim_to else base, rng))
    return Clip("lighting", [i / FPS for i in range(count)], frames, [dim_from, dim_to], size)


def object_enters(photo: Path, size: tuple[int, int] = (640, 360), seed: int = 2) -> Clip:
    """21.5 s of an empty room, then a pet-sized dark ellipse walks in from the left over 10 s, and out."""
    rng, base = np.random.default_rng(seed), _scene(photo, size)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    frames, count, enter = [], int(40 * FPS), 43
    for index in range(count):
        pixels = base
        if enter <= index < enter + int(10 * FPS):
            cx = width * (0.15 + 0.7 * (index - enter) / (10 * FPS))
            body = ((xx - cx) / (width * 0.12)) ** 2 + ((yy - height * 0.65) / (height * 0.12)) ** 2 <= 1
            pixels = base.copy()
            pixels[body] = (35.0, 28.0, 22.0)
        frames.append(_jpeg(pixels, rng))
    return Clip("object-enters", [i / FPS for i in range(count)], frames, [enter, enter + int(10 * FPS)], size)


def made_clips(photo: Path, size: tuple[int, int] = (640, 360)) -> list[Clip]:
    return [static_noise(photo, size=size), lighting(photo, size), object_enters(photo, size)]


def shared_clips(root: Path) -> list[Clip]:
    """The real footage under ``root``, if it exists (the workplace's is never committed)."""
    found = []
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if (p / "clip.json").is_file()):
            meta = json.loads((folder / "clip.json").read_text())
            paths = sorted(folder.glob("*.jpg"))
            times = [float(t) for t in meta["seconds_from_start"]][: len(paths)]
            with Image.open(paths[0]) as first:
                size = first.size
            found.append(Clip(folder.name, times, [p.read_bytes() for p in paths[: len(times)]], [], size))
    return found
