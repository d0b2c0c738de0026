"""Image decoding and question validation at the boundary; pixels equal the checkpoint's own processor."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from blip_serving.errors import InvalidInputError
from blip_serving.manifest import read_manifest
from blip_serving.stub.images import ImagePreprocessor, decode_image
from blip_serving.stub.questions import CheckpointTokenizer, QuestionTokenizer, decode_questions
from tests.conftest import INVALID_IMAGES, VALID_IMAGES

LIMITS = {"max_bytes": 20 * 2**20, "max_pixels": 40_000_000}


@pytest.mark.parametrize("path", VALID_IMAGES, ids=lambda p: p.name)
def test_pixels_equal_the_reference_processor(path, tiny_reference, tiny_build) -> None:
    """The stub's uint8 frame, rescaled and normalized by the image encoder's in-graph lookup, is bit for bit
    the processor's pixel values."""
    from blip_build.traceable import ImageEncoder

    processor = tiny_reference.processor
    size = processor.image_processor.size
    preprocess = ImagePreprocessor.from_directory(tiny_reference.checkpoint, (size["height"], size["width"], 3))
    ours = preprocess(decode_image(path.read_bytes(), **LIMITS))
    assert ours.dtype == np.uint8
    encoder = ImageEncoder(tiny_reference.model, read_manifest(tiny_build.target_dir()).spec)
    reference = processor(images=tiny_reference.image(path), return_tensors="pt")["pixel_values"]
    assert torch.equal(encoder.pixel_values(torch.from_numpy(ours)[None]), reference)


def test_tokenizer_ids_and_decoded_text_equal_transformers(tiny_reference) -> None:
    ours, theirs = CheckpointTokenizer(tiny_reference.checkpoint), tiny_reference.processor.tokenizer
    texts = ["Is the dog barking?", "¿Qué hace el PERRO, ahora?", "what's   on the couch"]
    assert ours.encode(texts) == theirs(texts)["input_ids"]
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(0, theirs.vocab_size, (20, 12), generator=generator)
    rows[:, 0], rows[:, -1] = theirs.convert_tokens_to_ids("[DEC]"), theirs.sep_token_id
    assert ours.decode(rows) == theirs.batch_decode(rows, skip_special_tokens=True)


def test_exif_orientation_is_applied() -> None:
    path = next(p for p in VALID_IMAGES if "orientation" in p.name)
    raw = Image.open(path)
    decoded = decode_image(path.read_bytes(), **LIMITS)
    assert decoded.size == (raw.size[1], raw.size[0]) and decoded.mode == "RGB"


@pytest.mark.parametrize("path", INVALID_IMAGES, ids=lambda p: p.name)
def test_invalid_images_are_refused_with_a_reason(path) -> None:
    with pytest.raises(InvalidInputError, match="IMAGE"):
        decode_image(path.read_bytes(), **LIMITS)


def test_decompression_bomb_names_the_pixel_limit() -> None:
    bomb = next(p for p in INVALID_IMAGES if "bomb" in p.name)
    with pytest.raises(InvalidInputError, match="decompression bomb"):
        decode_image(bomb.read_bytes(), **LIMITS)


def test_own_pixel_cap_applies_below_pillows() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200)).save(buffer, format="PNG")
    with pytest.raises(InvalidInputError, match="60000 pixels; the limit is 50000"):
        decode_image(buffer.getvalue(), max_bytes=2**20, max_pixels=50_000)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "IMAGE is empty"), (b"hello, not an image", "not an image"), (b"x" * 101, "101 bytes; the limit is 100")],
)
def test_bad_bytes(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        decode_image(data, max_bytes=100, max_pixels=10**6)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "QUESTIONS is empty"),
        ([b"ok?", b""], "question 2 is empty"),
        ([b"   "], "question 1 is empty"),
        ([b"\xff\xfe bad"], "question 1 is not valid UTF-8"),
        ([b"q?"] * 5, "5 questions; the limit is 4"),
    ],
)
def test_bad_questions(raw, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        decode_questions(np.array(raw, dtype=object), max_questions=4)


def test_questions_decode_utf8() -> None:
    assert decode_questions(np.array([b"Is the dog barking?", "¿qué?".encode()], dtype=object), max_questions=4) == [
        "Is the dog barking?",
        "¿qué?",
    ]


def test_tokenizer_pads_a_frame_to_the_smallest_bucket_with_the_real_mask(tiny_reference) -> None:
    tokenize = QuestionTokenizer(CheckpointTokenizer(tiny_reference.checkpoint), (16, 32))
    ids, mask = tokenize(["Is the dog barking?", "what?"])
    reference = tiny_reference.processor.tokenizer("Is the dog barking?")["input_ids"]
    assert ids.shape == mask.shape == (2, 16), "short questions do not pay for the long bucket"
    assert ids[0, : len(reference)].tolist() == reference and int(mask[0].sum()) == len(reference)
    long_question = "is the dog " * 5  # 17 tokens with [CLS] and [SEP]: the whole frame takes 32
    assert tokenize(["what?", long_question])[0].shape == (2, 32)
    with pytest.raises(InvalidInputError, match=r"question 2 is \d+ tokens long; the limit is 32"):
        tokenize(["short", "dog " * 40])


def test_jpeg_walk_accepts_every_valid_jpeg() -> None:
    from blip_serving.stub.images import check_jpeg_structure

    jpegs = [p for p in VALID_IMAGES if p.read_bytes()[:2] == b"\xff\xd8"]
    assert jpegs, "the shared images hold JPEGs"
    for path in jpegs:
        check_jpeg_structure(path.read_bytes())


def test_jpeg_cut_inside_its_header_is_refused() -> None:
    data = next(p for p in VALID_IMAGES if p.name == "photo.jpg").read_bytes()
    with pytest.raises(InvalidInputError, match="truncated JPEG"):
        decode_image(data[:300], **LIMITS)


def test_fast_resize_decodes_large_jpegs_at_a_reduced_scale_and_the_default_stays_exact() -> None:
    """The option's JPEG draft keeps both sides at least the input size, after EXIF rotation too; other formats and
    the default path decode at full size."""
    from blip_bench.corpus import camera_frame, generated_images

    frame = camera_frame(1920, 1080)
    assert decode_image(frame, **LIMITS).size == (1920, 1080)
    assert decode_image(frame, **LIMITS, draft=(384, 384)).size == (960, 540)
    sideways = (generated_images() / "camera" / "frame_1920x1080_exif6.jpg").read_bytes()
    assert decode_image(sideways, **LIMITS, draft=(384, 384)).size == (960, 540), "upright after the draft"
    small = camera_frame(640, 360)
    assert decode_image(small, **LIMITS, draft=(384, 384)).size == (640, 360), "never below the input size"
    png = next(path for path in VALID_IMAGES if path.suffix == ".png").read_bytes()
    assert decode_image(png, **LIMITS, draft=(8, 8)).size == decode_image(png, **LIMITS).size


def test_fast_resize_keeps_the_shape_and_stays_close(tiny_reference) -> None:
    from blip_bench.corpus import camera_frame

    size = tiny_reference.processor.image_processor.size
    shape = (size["height"], size["width"], 3)
    exact = ImagePreprocessor.from_directory(tiny_reference.checkpoint, shape)
    fast = ImagePreprocessor.from_directory(tiny_reference.checkpoint, shape, fast=True)
    image = decode_image(camera_frame(1920, 1080), **LIMITS)
    ours, reference = fast(image).astype(int), exact(image).astype(int)
    assert ours.shape == reference.shape == shape
    assert np.abs(ours - reference).mean() < 3, "a reduced resize, not another picture"
