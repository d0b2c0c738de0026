"""Where a BLIP VQA checkpoint comes from: a local directory, a hub id, or a random one made offline.

Random checkpoints are saved with ``save_pretrained`` (model and processor), so anyone can load the very
checkpoint a build used and compare against transformers.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import shutil
import string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blip_build.s3 import download, is_s3

log = logging.getLogger(__name__)

RANDOM_MODELS = ("random-tiny", "random-base", "random-host")
RANDOM_SEED = 0
TINY_INIT_RANGE = 0.2
TINY_SEP_BIAS = 3.0

# BERT's layout of special ids, which the real blip-vqa-base tokenizer keeps: [PAD]=0, [UNK]=100,
# [CLS]=101, [SEP]=102, [MASK]=103, then BLIP adds [DEC] (decoder bos) and [ENC].
_SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
_WORDS = [
    "a",
    "an",
    "the",
    "is",
    "are",
    "was",
    "were",
    "be",
    "being",
    "do",
    "does",
    "did",
    "not",
    "no",
    "yes",
    "what",
    "which",
    "who",
    "where",
    "when",
    "why",
    "how",
    "many",
    "much",
    "this",
    "that",
    "there",
    "here",
    "it",
    "its",
    "in",
    "on",
    "at",
    "of",
    "to",
    "for",
    "with",
    "from",
    "by",
    "and",
    "or",
    "but",
    "dog",
    "dogs",
    "cat",
    "cats",
    "puppy",
    "pet",
    "pets",
    "person",
    "people",
    "man",
    "woman",
    "child",
    "horse",
    "horses",
    "bird",
    "sofa",
    "couch",
    "chair",
    "table",
    "bed",
    "floor",
    "door",
    "window",
    "room",
    "barking",
    "chewing",
    "furniture",
    "sleeping",
    "eating",
    "drinking",
    "playing",
    "running",
    "jumping",
    "sitting",
    "lying",
    "standing",
    "looking",
    "walking",
    "scratching",
    "digging",
    "biting",
    "toy",
    "ball",
    "bowl",
    "food",
    "water",
    "outside",
    "inside",
    "camera",
    "color",
    "black",
    "white",
    "brown",
    "red",
    "blue",
    "green",
    "one",
    "two",
    "three",
    "four",
    "five",
    "picture",
    "photo",
    "image",
]


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model, its processor, and where it lives on disk (for the manifest)."""

    model: Any
    processor: Any
    source: str
    path: str | None


def _vocabulary(size: int | None) -> list[str]:
    """A WordPiece vocabulary with BERT's special ids; covers any ASCII text through single-character pieces."""
    pieces = list(dict.fromkeys(_WORDS + list(string.ascii_lowercase + string.digits + string.punctuation)))
    pieces += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    total = max(size or 0, 104 + len(pieces))
    vocab = [f"[unused{i}]" for i in range(total)]
    for token, index in _SPECIAL_IDS.items():
        vocab[index] = token
    vocab[104 : 104 + len(pieces)] = pieces
    return vocab


def make_tokenizer(vocab_size: int | None = None) -> Any:
    """Build the project's BERT tokenizer (uncased WordPiece) with BLIP's [DEC] and [ENC] specials."""
    from transformers import BertTokenizer

    vocab = {token: index for index, token in enumerate(_vocabulary(vocab_size))}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    return tokenizer


def tokenizer_text_config(tokenizer: Any) -> dict[str, int]:
    """The text-config entries a tokenizer decides: vocabulary size and the [DEC], [SEP] and [PAD] ids."""
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def random_config(kind: str, tokenizer: Any) -> Any:
    """``random-base`` is blip-vqa-base's architecture (text heads 12, as the real checkpoint); ``random-tiny`` is
    small enough for tests yet keeps every structural feature (several layers, heads, cross-attention);
    ``random-host`` is random-tiny at blip-vqa-base's 384 px input."""
    from transformers import BlipConfig

    text = {**tokenizer_text_config(tokenizer), "num_attention_heads": 12}
    if kind == "random-base":
        return BlipConfig(text_config=text)
    if kind in ("random-tiny", "random-host"):
        # A wide init makes answers depend on the image and the question (BLIP's default vision init, 1e-10,
        # gives every input the same answer), so a parity test on random-tiny can actually fail.
        text.update(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
        text["initializer_range"] = TINY_INIT_RANGE
        vision = {
            "initializer_range": TINY_INIT_RANGE,
            "hidden_size": 48,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            # random-host keeps blip-vqa-base's 384 px input with tiny layers and 32 px patches (145 image tokens):
            # the host decodes and resizes exactly as for the real model while the model's own time stays small, so
            # what a served frame costs beyond it is the host's work (make bench's host section).
            "image_size": 384 if kind == "random-host" else 64,
            "patch_size": 32 if kind == "random-host" else 16,
        }
        return BlipConfig(text_config=text, vision_config=vision, initializer_range=TINY_INIT_RANGE)
    raise ValueError(f"unknown random model {kind!r}; expected one of {', '.join(RANDOM_MODELS)}")


def make_random_checkpoint(kind: str, directory: Path) -> Path:
    """Create and ``save_pretrained`` a random BLIP VQA checkpoint with its processor, deterministically."""
    import torch
    from transformers import BlipForQuestionAnswering, BlipImageProcessorPil, BlipProcessor

    tokenizer = make_tokenizer(vocab_size=30522 if kind == "random-base" else None)
    config = random_config(kind, tokenizer)
    torch.manual_seed(RANDOM_SEED)
    model = BlipForQuestionAnswering(config).eval()
    if kind != "random-base":
        # Favour [SEP] so that answers of every length occur: full length, stopped early, and empty.
        with torch.no_grad():
            model.text_decoder.cls.predictions.bias[tokenizer.sep_token_id] += TINY_SEP_BIAS
    size = config.vision_config.image_size
    image_processor = BlipImageProcessorPil(size={"height": size, "width": size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    log.info("saved random checkpoint %s to %s", kind, directory)
    return directory


GENERATOR_MARKER = ".generator"


def generator_version() -> str:
    """A hash of the code that makes random checkpoints (this module)."""
    return hashlib.sha256(inspect.getsource(sys.modules[__name__]).encode()).hexdigest()[:16]


def load_checkpoint(model: str, random_dir: Path) -> Checkpoint:
    """Load ``model``: a random kind (made under ``random_dir`` once), a local directory, an ``s3://`` folder
    (downloaded under ``random_dir/s3``, ``blip_build.s3``), or a hub id (a private one with ``HF_TOKEN``)."""
    from transformers import BlipForQuestionAnswering, BlipProcessor

    if model in RANDOM_MODELS:
        directory = random_dir / model
        marker = directory / GENERATOR_MARKER
        # Made once per generator version: a changed recipe (sizes, init) must not be served from an old folder.
        if not marker.is_file() or marker.read_text() != generator_version():
            shutil.rmtree(directory, ignore_errors=True)
            make_random_checkpoint(model, directory)
            marker.write_text(generator_version())
        path: str | None = str(directory.resolve())
        source = path
    elif is_s3(model):
        path = str(download(model, random_dir / "s3").resolve())
        source = path
    elif Path(model).is_dir():
        path = str(Path(model).resolve())
        source = path
    else:
        path, source = None, model
    try:
        blip = BlipForQuestionAnswering.from_pretrained(source).eval()
        processor = BlipProcessor.from_pretrained(source)
    except OSError as error:
        raise OSError(
            f"cannot load BLIP checkpoint {model!r}: not a local directory with config.json, and the hub "
            f"is unreachable or has no such id ({error.__class__.__name__}: {str(error).splitlines()[0]})"
        ) from error
    return Checkpoint(model=blip, processor=processor, source=model, path=path)


def pixel_normalization(processor: Any, channels: int = 3) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    """The image processor's (rescale factor, mean, std), identities where it skips a step; the image encoder's
    artifact applies them in its graph."""
    settings = processor.image_processor
    rescale = float(settings.rescale_factor) if getattr(settings, "do_rescale", True) else 1.0
    if getattr(settings, "do_normalize", True):
        return rescale, tuple(float(v) for v in settings.image_mean), tuple(float(v) for v in settings.image_std)
    return rescale, (0.0,) * channels, (1.0,) * channels


SUPPORTED_IMAGE_PROCESSORS = frozenset({"BlipImageProcessor", "BlipImageProcessorPil"})


def pixel_resize(settings: Mapping[str, Any], image_size: int | Sequence[int]) -> tuple[int, bool]:
    """The image processor's (Pillow filter, convert to RGB) from its saved settings (``image_processor.to_dict()``),
    the steps a stub and the API tier run before the artifact; a processor whose steps they do not run (another
    kind, a center crop, padding, no resize, another size than the model's ``image_size``) is
    refused here, at build, in one line."""
    input_size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
    kind = settings.get("image_processor_type", "BlipImageProcessor")
    if kind not in SUPPORTED_IMAGE_PROCESSORS:
        raise ValueError(
            f"image processor {kind} is not supported; expected one of {sorted(SUPPORTED_IMAGE_PROCESSORS)}"
        )
    if settings.get("do_center_crop") or settings.get("do_pad"):
        raise ValueError("image processor settings ask for center crop or padding, which BLIP does not use")
    if not settings.get("do_resize", True):
        raise ValueError("image processor settings turn the resize off; the image encoder takes one input size")
    size = settings.get("size") or {}
    if (size.get("height"), size.get("width")) != input_size:
        raise ValueError(f"image processor resizes to {size}, the vision model takes {input_size[0]}x{input_size[1]}")
    resample = settings.get("resample", 3)
    resample = int(getattr(resample, "value", resample))  # an Image.Resampling member or its number
    return resample, bool(settings.get("do_convert_rgb", True))
