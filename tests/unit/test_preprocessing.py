"""Image decoding and question validation at the boundary; pixels equal the checkpoint's own processor."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from blip_build.checkpoints import pixel_resize
from blip_contract.pixels import PixelSettings
from blip_images.decode import decode_image
from blip_images.resize import Resizer
from blip_serving.errors import InvalidInputError
from blip_serving.manifest import read_manifest
from blip_serving.stub.questions import CheckpointTokenizer, QuestionTokenizer, decode_questions
from tests.conftest import INVALID_IMAGES, VALID_IMAGES

LIMITS = {"max_bytes": 20 * 2**20, "max_pixels": 40_000_000}


@pytest.mark.parametrize("path", VALID_IMAGES, ids=lambda p: p.name)
def test_pixels_equal_the_reference_processor(path, tiny_reference, tiny_build) -> None:
    """The stub's uint8 frame, rescaled and normalized by the image encoder's in-graph lookup, is bit for bit
    the processor's pixel values."""
    from blip_build.traceable import ImageEncoder

    processor = tiny_reference.processor
    spec = read_manifest(tiny_build.target_dir()).spec  # the build read the processor's resize into the spec
    ours = Resizer(spec.pixel_settings())(decode_image(path.read_bytes(), **LIMITS))
    assert ours.dtype == np.uint8
    encoder = ImageEncoder(tiny_reference.model, spec)
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


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_pixel_cap_accepts_exactly_the_limit_and_refuses_one_above() -> None:
    data = _png(300, 200)
    assert decode_image(data, max_bytes=2**20, max_pixels=60_000).size == (300, 200)
    with pytest.raises(InvalidInputError, match=r"300x200 = 60000 pixels; the limit is 59999 \(decompression bomb"):
        decode_image(data, max_bytes=2**20, max_pixels=59_999)


def test_the_byte_cap_accepts_exactly_the_limit_and_refuses_one_above() -> None:
    data = _png(30, 20)
    assert decode_image(data, max_bytes=len(data), max_pixels=10**6).size == (30, 20)
    with pytest.raises(InvalidInputError, match=f"IMAGE is {len(data)} bytes; the limit is {len(data) - 1} bytes"):
        decode_image(data, max_bytes=len(data) - 1, max_pixels=10**6)


def test_junk_between_jpeg_segments_is_refused_though_pillow_decodes_it() -> None:
    path = next(p for p in INVALID_IMAGES if p.name == "junk_between_jpeg_segments.jpg")
    data = path.read_bytes()
    Image.open(io.BytesIO(data)).load()  # libjpeg skips the junk without a word: the walk is what catches it
    with pytest.raises(InvalidInputError, match=r"corrupt JPEG: 5 junk bytes before a marker at offset 89"):
        decode_image(data, **LIMITS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"^IMAGE is empty: send the encoded image file \(JPEG, PNG, WebP, \.\.\.\)$"),
        (b"hello, not an image", r"^IMAGE is not an image Pillow can identify"),
        (b"x" * 101, "^IMAGE is 101 bytes; the limit is 100 bytes$"),
    ],
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
    ],
)
def test_bad_questions(raw, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        decode_questions(np.array(raw, dtype=object), max_questions=4)


def test_the_question_count_limit_is_exact() -> None:
    assert decode_questions(np.array([b"q?"] * 4, dtype=object), max_questions=4) == ["q?"] * 4
    with pytest.raises(InvalidInputError, match="QUESTIONS has 5 questions; the limit is 4 per request"):
        decode_questions(np.array([b"q?"] * 5, dtype=object), max_questions=4)


def test_questions_as_str_or_bytes_decode_the_same(tiny_reference) -> None:
    assert decode_questions(np.array(["Is it?", b"Is it?"], dtype=object), max_questions=4) == ["Is it?", "Is it?"]
    with pytest.raises(InvalidInputError, match=r"^QUESTIONS is empty: send at least one question$"):
        decode_questions(np.array([], dtype=object), max_questions=4)
    tokenizer = CheckpointTokenizer(tiny_reference.checkpoint)
    ids = tokenizer.encode(["Is the dog barking?"])
    assert tokenizer.decode(ids) == tokenizer.decode(torch.tensor(ids)) == ["is the dog barking?"]


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


def test_the_token_limit_accepts_exactly_the_largest_bucket_and_refuses_one_more(tiny_reference) -> None:
    tokenizer = CheckpointTokenizer(tiny_reference.checkpoint)
    tokenize = QuestionTokenizer(tokenizer, (16, 32))
    at_limit, over = "dog " * 30, "dog " * 31  # [CLS] + 30 words + [SEP] = 32 tokens
    assert [len(ids) for ids in tokenizer.encode([at_limit, over])] == [32, 33]
    ids, mask = tokenize([at_limit])
    assert ids.shape == (1, 32) and int(mask.sum()) == 32
    with pytest.raises(InvalidInputError, match="question 1 is 33 tokens long; the limit is 32 tokens"):
        tokenize([over])
    three = QuestionTokenizer(tokenizer, (8, 16, 32))  # the limit is the largest bucket, however many there are
    assert three([at_limit])[0].shape == (1, 32) and three(["dog"])[0].shape == (1, 8)


def test_jpeg_walk_accepts_every_valid_jpeg() -> None:
    from blip_images.decode import check_jpeg_structure

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


def test_fast_resize_keeps_the_shape_and_stays_close(tiny_build) -> None:
    from blip_bench.corpus import camera_frame

    spec = read_manifest(tiny_build.target_dir()).spec
    exact, fast = Resizer(spec.pixel_settings()), Resizer(spec.pixel_settings(fast=True))
    image = decode_image(camera_frame(1920, 1080), **LIMITS)
    ours, reference = fast(image).astype(int), exact(image).astype(int)
    assert ours.shape == reference.shape == spec.pixel_shape
    assert np.abs(ours - reference).mean() < 3, "a reduced resize, not another picture"


SETTINGS = {"image_processor_type": "BlipImageProcessor", "size": {"height": 8, "width": 12}, "resample": 2}


def test_the_processors_resize_is_read_at_build_and_unsupported_ones_refused() -> None:
    assert pixel_resize(SETTINGS, (8, 12)) == (2, True)
    assert pixel_resize({"size": {"height": 8, "width": 8}}, 8) == (Image.Resampling.BICUBIC, True), "defaults"
    assert pixel_resize({**SETTINGS, "do_convert_rgb": False}, (8, 12)) == (2, False)
    assert pixel_resize({**SETTINGS, "image_processor_type": "BlipImageProcessorPil"}, (8, 12)) == (2, True)
    assert pixel_resize({**SETTINGS, "resample": Image.Resampling.LANCZOS}, (8, 12)) == (1, True), "an enum member"
    with pytest.raises(
        ValueError,
        match=r"^image processor CLIPImageProcessor is not supported; expected one of \['BlipImageProcessor', 'BlipImageProcessorPil'\]$",
    ):
        pixel_resize({**SETTINGS, "image_processor_type": "CLIPImageProcessor"}, (8, 12))
    for setting in ("do_center_crop", "do_pad"):
        with pytest.raises(
            ValueError, match=r"^image processor settings ask for center crop or padding, which BLIP does not use$"
        ):
            pixel_resize({**SETTINGS, setting: True}, (8, 12))
    with pytest.raises(ValueError, match=r"^image processor settings turn the resize off"):
        pixel_resize({**SETTINGS, "do_resize": False}, (8, 12))
    with pytest.raises(ValueError, match=r"the vision model takes 8x8$"):
        pixel_resize(SETTINGS, 8)


def settings(**changes) -> PixelSettings:
    return PixelSettings(height=8, width=12, resample=2, max_image_bytes=2**20, max_image_pixels=10**6, **changes)


def test_the_resizer_composites_resizes_with_the_filter_and_checks_its_output() -> None:
    transparent = Image.new("RGBA", (30, 20), (0, 0, 0, 0))
    pixels = Resizer(settings())(transparent)
    assert pixels.shape == (8, 12, 3) and pixels.dtype == np.uint8 and (pixels == 255).all(), "onto white"
    with pytest.raises(RuntimeError, match=r"^the resize produced \(8, 12, 4\), the model takes \(8, 12, 3\)$"):
        Resizer(settings(convert_rgb=False))(transparent)
    same = Resizer(settings())(Image.new("RGB", (12, 8), (1, 2, 3)))
    assert same.shape == (8, 12, 3) and same[0, 0].tolist() == [1, 2, 3], "already the input size"
    picture = Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    expected = np.asarray(picture.resize((12, 8), resample=2))
    assert np.array_equal(Resizer(settings())(picture), expected), "the checkpoint's filter"
    fast = Resizer(settings(fast=True))
    assert np.array_equal(fast(picture), np.asarray(picture.resize((12, 8), resample=2, reducing_gap=2.0)))
    assert fast.draft == (12, 12) and Resizer(settings()).draft is None


def test_composite_on_white_leaves_opaque_pictures_as_they_are() -> None:
    from blip_images.decode import composite_on_white

    rgb = Image.new("RGB", (4, 4), (9, 8, 7))
    assert composite_on_white(rgb) is rgb
    gray = composite_on_white(Image.new("L", (4, 4), 100))
    assert gray.mode == "RGB" and gray.getpixel((0, 0)) == (100, 100, 100)
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30] * 256)
    palette.info["transparency"] = 0
    assert composite_on_white(palette).getpixel((0, 0)) == (255, 255, 255), "a palette's transparent entry too"
    half = composite_on_white(Image.new("RGBA", (4, 4), (0, 0, 0, 128)))
    assert half.mode == "RGB" and half.getpixel((0, 0)) == (127, 127, 127)


SOI, SOS = b"\xff\xd8", b"\xff\xda\x00\x0c"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (SOI, "IMAGE is a truncated JPEG: it ends before the image data"),
        (SOI + b"\xff\xff", "IMAGE is a truncated JPEG: it ends before the image data"),  # fill bytes, then nothing
        (SOI + b"\xff\xe0\x00", "IMAGE is a truncated JPEG: it ends before the image data"),  # half a length
        (
            SOI + b"\xff\xe0\x00\x10",
            "IMAGE is a truncated JPEG: it ends before the image data",
        ),  # a segment past the end
        (SOI + b"abc", "IMAGE is a corrupt JPEG: 3 junk bytes before a marker at offset 2"),
        (SOI + b"ab\xff\xda\x00\x0c", "IMAGE is a corrupt JPEG: 2 junk bytes before a marker at offset 2"),
        (SOI + b"\xff\xe0\x00\x01" + SOS, "IMAGE is a corrupt JPEG: segment 0xE0 has length 1"),
    ],
)
def test_the_jpeg_walk_names_what_is_wrong(data: bytes, message: str) -> None:
    from blip_images.decode import check_jpeg_structure

    with pytest.raises(InvalidInputError, match=f"^{re.escape(message)}$"):
        check_jpeg_structure(data)


@pytest.mark.parametrize(
    "data",
    [
        SOI + SOS,  # the scan's length is the last thing: the walk stops there, Pillow decides the rest
        SOI + b"\xff\xfe\x00\x02" + SOS,  # an empty comment segment: length 2 is the smallest valid one
        SOI + b"\xff\xd0\xff\x01" + SOS,  # RST0 and TEM carry no length
        SOI + b"\xff\xff\xff\xe0\x00\x04ab" + SOS,  # fill bytes before a marker
    ],
)
def test_the_jpeg_walk_accepts_well_formed_segments(data: bytes) -> None:
    from blip_images.decode import check_jpeg_structure

    check_jpeg_structure(data)


def test_every_valid_image_decodes_upright_rgb_down_to_one_pixel() -> None:
    for path in VALID_IMAGES:
        assert decode_image(path.read_bytes(), **LIMITS).mode == "RGB", path.name
    for size in ((1, 1), (1, 5), (5, 1)):
        assert decode_image(_png(*size), **LIMITS).size == size


def test_the_pad_token_comes_from_the_tokenizer_config(tiny_reference, tmp_path) -> None:
    import json
    import shutil

    shutil.copy(tiny_reference.checkpoint / "tokenizer.json", tmp_path / "tokenizer.json")
    expected = tiny_reference.processor.tokenizer.pad_token_id
    for config in ({"pad_token": {"content": "[PAD]", "lstrip": False}}, {"pad_token": "[PAD]"}, {}):
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
        assert CheckpointTokenizer(tmp_path).pad_token_id == expected, config
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<pad>"}))
    with pytest.raises(
        ValueError, match=f"^pad token '<pad>' is not in {re.escape(str(tmp_path / 'tokenizer.json'))}$"
    ):
        CheckpointTokenizer(tmp_path)
