"""The one typed spec of the split BLIP VQA model.

Every tensor name, dtype and static shape lives here once. Tracing takes its example inputs from it, the
config.pbtxt files are generated from it and the client reads its wire names from it. Sizes come from the
checkpoint's own config, never from constants: 384 px, 577 tokens and 768 wide are one checkpoint's values.

This module imports no torch, so the API tier can use the wire contract without the model stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

TARGETS: tuple[str, ...] = ("cpu", "gpu", "neuron")

# Wire contract of the ensemble, the names the API tier uses.
ENSEMBLE_NAME = "blip_vqa"
IMAGE = "IMAGE"
QUESTIONS = "QUESTIONS"
ANSWERS = "ANSWERS"

# Tensors that pass between the three steps inside the ensemble.
IMAGE_EMBEDS = "IMAGE_EMBEDS"
QUESTION_EMBEDS = "QUESTION_EMBEDS"
QUESTION_MASK = "QUESTION_MASK"

IMAGE_ENCODER = "image_encoder"
TEXT_ENCODER = "text_encoder"
TEXT_DECODER = "text_decoder"
COMPONENT_NAMES: tuple[str, ...] = (IMAGE_ENCODER, TEXT_ENCODER, TEXT_DECODER)

# Parameters of a component's config.pbtxt, read by the model in ``initialize``.
PARAM_TARGET = "target"
PARAM_ARTIFACT_DIR = "artifact_dir"
PARAM_INTRA_OP_THREADS = "intra_op_threads"
PARAM_NEURON_CORE_START = "neuron_core_start_index"
PARAM_NEURON_CORE_END = "neuron_core_end_index"

MIN_QUESTION_TOKENS = 32
DEFAULT_MAX_QUESTIONS = 16
DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000

_NUMPY_DTYPES: dict[str, Any] = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "BYTES": np.object_}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: Triton dtype name and dims, ``-1`` where the size varies per request."""

    name: str
    dtype: str
    dims: tuple[int, ...]

    @property
    def numpy_dtype(self) -> Any:
        return _NUMPY_DTYPES[self.dtype]

    @property
    def triton_dtype(self) -> str:
        """The ``TYPE_*`` name config.pbtxt uses (BYTES is TYPE_STRING there)."""
        return "TYPE_STRING" if self.dtype == "BYTES" else f"TYPE_{self.dtype}"


@dataclass(frozen=True)
class ComponentSpec:
    """A Triton model: its wire tensors, and the tensors its traced artifact takes and returns."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    traced_inputs: tuple[TensorSpec, ...]
    traced_outputs: tuple[TensorSpec, ...]

    @property
    def artifact_name(self) -> str:
        return f"{self.name}.pt"


@dataclass(frozen=True)
class BlipSpec:
    """Static shapes of one checkpoint's split model, plus the serving limits that bound a request."""

    image_height: int
    image_width: int
    num_channels: int
    image_tokens: int
    vision_hidden_size: int
    text_hidden_size: int
    vocab_size: int
    question_tokens: int
    answer_tokens: int
    bos_token_id: int
    sep_token_id: int
    pad_token_id: int
    max_questions: int = DEFAULT_MAX_QUESTIONS
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    components: dict[str, ComponentSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.question_tokens < MIN_QUESTION_TOKENS:
            raise ValueError(f"question_tokens must be at least {MIN_QUESTION_TOKENS}, got {self.question_tokens}")
        if self.answer_tokens < 2:
            raise ValueError(f"answer_tokens must be at least 2 ([DEC] and one token), got {self.answer_tokens}")
        if self.max_questions < 1:
            raise ValueError(f"max_questions must be at least 1, got {self.max_questions}")
        object.__setattr__(self, "components", self._build_components())

    @classmethod
    def from_model_config(
        cls,
        config: Any,
        *,
        max_length: int,
        question_tokens: int = MIN_QUESTION_TOKENS,
        max_questions: int = DEFAULT_MAX_QUESTIONS,
    ) -> BlipSpec:
        """Read the shapes from a ``BlipConfig`` and the decoder's generation length."""
        vision, text = config.vision_config, config.text_config
        height, width = _pair(vision.image_size)
        patch_h, patch_w = _pair(vision.patch_size)
        limit = text.max_position_embeddings
        for what, value in (("question_tokens", question_tokens), ("max_length", max_length)):
            if value > limit:
                raise ValueError(f"{what}={value} exceeds the text model's max_position_embeddings={limit}")
        return cls(
            image_height=height,
            image_width=width,
            num_channels=getattr(vision, "num_channels", 3),
            image_tokens=(height // patch_h) * (width // patch_w) + 1,
            vision_hidden_size=vision.hidden_size,
            text_hidden_size=text.hidden_size,
            vocab_size=text.vocab_size,
            question_tokens=question_tokens,
            answer_tokens=max_length,
            bos_token_id=text.bos_token_id,
            sep_token_id=text.sep_token_id,
            pad_token_id=text.pad_token_id,
            max_questions=max_questions,
        )

    def to_dict(self) -> dict[str, int]:
        data = asdict(self)
        data.pop("components", None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlipSpec:
        return cls(**data)

    @property
    def ensemble_inputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(IMAGE, "BYTES", (1,)), TensorSpec(QUESTIONS, "BYTES", (-1,)))

    @property
    def ensemble_outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(ANSWERS, "BYTES", (-1,)),)

    def _build_components(self) -> dict[str, ComponentSpec]:
        image, questions = self.ensemble_inputs
        (answers,) = self.ensemble_outputs
        c, h, w = self.num_channels, self.image_height, self.image_width
        p, dv, dt, q = self.image_tokens, self.vision_hidden_size, self.text_hidden_size, self.question_tokens
        image_embeds = TensorSpec(IMAGE_EMBEDS, "FP32", (p, dv))
        question_embeds = TensorSpec(QUESTION_EMBEDS, "FP32", (-1, q, dt))
        question_mask = TensorSpec(QUESTION_MASK, "INT64", (-1, q))
        return {
            IMAGE_ENCODER: ComponentSpec(
                name=IMAGE_ENCODER,
                inputs=(image,),
                outputs=(image_embeds,),
                traced_inputs=(TensorSpec("pixel_values", "FP32", (-1, c, h, w)),),
                traced_outputs=(TensorSpec("image_embeds", "FP32", (-1, p, dv)),),
            ),
            TEXT_ENCODER: ComponentSpec(
                name=TEXT_ENCODER,
                inputs=(questions, image_embeds),
                outputs=(question_embeds, question_mask),
                traced_inputs=(
                    TensorSpec("input_ids", "INT64", (-1, q)),
                    TensorSpec("attention_mask", "INT64", (-1, q)),
                    # One frame's embeddings, shared by all its questions through broadcasting.
                    TensorSpec("image_embeds", "FP32", (1, p, dv)),
                ),
                traced_outputs=(TensorSpec("question_embeds", "FP32", (-1, q, dt)),),
            ),
            TEXT_DECODER: ComponentSpec(
                name=TEXT_DECODER,
                inputs=(question_embeds, question_mask),
                outputs=(answers,),
                traced_inputs=(
                    TensorSpec("decoder_input_ids", "INT64", (-1, self.answer_tokens)),
                    TensorSpec("position", "INT64", (1,)),
                    TensorSpec("question_embeds", "FP32", (-1, q, dt)),
                    TensorSpec("question_mask", "INT64", (-1, q)),
                ),
                traced_outputs=(TensorSpec("next_token_logits", "FP32", (-1, self.vocab_size)),),
            ),
        }

    def example_inputs(self, component: str, batch: int = 2, seed: int = 0) -> tuple[Any, ...]:
        """Pseudo inputs for tracing and verification, built from the traced shapes.

        The masks are ragged (real padding) and token ids are drawn from the vocabulary, so a trace that baked
        in an all-ones mask or one batch size fails verification on another seed or batch.
        """
        import torch

        generator = torch.Generator().manual_seed(seed)
        tensors = []
        for spec in self.components[component].traced_inputs:
            shape = tuple(batch if d == -1 else d for d in spec.dims)
            if spec.name == "position":
                tensors.append(torch.tensor([int(torch.randint(0, self.answer_tokens, (1,), generator=generator))]))
            elif spec.name.endswith("mask"):
                lengths = torch.randint(2, shape[1] + 1, (shape[0],), generator=generator)
                tensors.append((torch.arange(shape[1])[None, :] < lengths[:, None]).long())
            elif spec.dtype == "INT64":
                tensors.append(torch.randint(0, self.vocab_size, shape, generator=generator))
            else:
                tensors.append(torch.randn(shape, generator=generator))
        return tuple(tensors)


def _pair(value: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    height, width = value
    return int(height), int(width)
