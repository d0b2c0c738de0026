"""The one typed spec of the split BLIP VQA model.

Every tensor name, dtype and static shape lives here once. Tracing takes its example inputs from it, the
config.pbtxt files are generated from it and the stubs check their inputs against it. Sizes come from the
checkpoint's own config, never from constants: 384 px, 577 tokens and 768 wide are one checkpoint's values.

This module imports no torch (``example_inputs`` imports it when called); the wire names callers use live
in ``blip_contract``, which this spec builds on; callers never import this module.

Why one module over 300 lines: it holds every tensor name, dtype, shape and bucket of the model, read by the build,
the configs and the stubs; split, a change to one tensor would again touch several files. What a target or a layout
adds of its own (the Neuron core range, the GPU's host-output switch) is that target's, in
``blip_serving.stub_parameters`` and the target modules.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from blip_contract import (
    ANSWERS,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_QUESTIONS,
    IMAGE,
    PUBLIC_INPUTS,
    PUBLIC_MODEL,
    PUBLIC_OUTPUTS,
    QUESTIONS,
    SCORES,
    SCORES_ONLY,
    TensorSpec,
)
from blip_contract.pixels import PIXEL_MODEL, PIXELS, PixelSettings, pixel_inputs

# The wire names above are re-exported: serving code reads everything from the spec, callers from blip_contract.
__all__ = [
    "ANSWERS",
    "IMAGE",
    "PIXELS",
    "PIXEL_MODEL",
    "PUBLIC_MODEL",
    "QUESTIONS",
    "SCORES",
    "SCORES_ONLY",
    "BlipSpec",
    "ComponentSpec",
    "TensorSpec",
]

# Tensors that pass between the three steps inside the ensemble.
IMAGE_EMBEDS = "IMAGE_EMBEDS"
QUESTION_EMBEDS = "QUESTION_EMBEDS"
QUESTION_MASK = "QUESTION_MASK"

IMAGE_ENCODER = "image_encoder"
TEXT_ENCODER = "text_encoder"
TEXT_DECODER = "text_decoder"
COMPONENT_NAMES: tuple[str, ...] = (IMAGE_ENCODER, TEXT_ENCODER, TEXT_DECODER)

# Shape buckets. A static-shape build (always on neuron) traces one artifact per bucket and pads to them; a
# shape-polymorphic one (cpu, gpu by default) runs exact sizes and only questions are padded to their bucket.
DEFAULT_QUESTION_BUCKETS = (16, 32)
DEFAULT_IMAGE_BATCH_BUCKETS = (1, 4, 8)
DEFAULT_QUESTION_BATCH_BUCKETS = (4, 16)  # benchmarks/results/buckets-cpu.json: fits 3-question frames, 16 at once
# The decoder's answer buffer grows through these lengths (plus the full answer length).
DEFAULT_SHORT_DECODE_LENGTHS = (1, 4)

# Bytes per element of the traced tensors' dtypes.
DTYPE_BYTES = {"FP32": 4, "FP16": 2, "INT64": 8, "INT32": 4, "UINT8": 1}

# Names of the axes that vary: a static build has one artifact per combination of their bucket sizes.
BATCH = "batch"
# Frames in one text-encoder call: its questions pick their frame's image embeddings by index.
FRAMES = "frames"
QUESTION_TOKENS = "question_tokens"
ANSWER_TOKENS = "answer_tokens"


@dataclass(frozen=True)
class ComponentSpec:
    """A Triton model: its wire tensors, and the tensors its traced artifact takes and returns."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    traced_inputs: tuple[TensorSpec, ...]
    traced_outputs: tuple[TensorSpec, ...]
    # The axis sizes of each artifact of a static-shape build (Neuron), batch included.
    shape_buckets: tuple[dict[str, int], ...] = ()

    def io_bytes(self, sizes: dict[str, int]) -> int:
        """Bytes of the traced inputs and outputs of one artifact at ``sizes`` (every axis named): what a static
        artifact's I/O buffers hold on its device."""
        tensors = (*self.traced_inputs, *self.traced_outputs)
        return sum(math.prod(t.shape(sizes)) * DTYPE_BYTES[t.dtype] for t in tensors)

    def artifact_name(self, sizes: dict[str, int] | None = None) -> str:
        """``<component>.pt`` for a shape-polymorphic artifact, ``<component>.batch4.question_tokens16.pt`` else."""
        suffix = "".join(f".{axis}{size}" for axis, size in sorted((sizes or {}).items()))
        return f"{self.name}{suffix}.pt"


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
    answer_tokens: int
    bos_token_id: int
    sep_token_id: int
    pad_token_id: int
    yes_token_id: int
    no_token_id: int
    question_buckets: tuple[int, ...] = DEFAULT_QUESTION_BUCKETS
    image_batch_buckets: tuple[int, ...] = DEFAULT_IMAGE_BATCH_BUCKETS
    question_batch_buckets: tuple[int, ...] = DEFAULT_QUESTION_BATCH_BUCKETS
    max_questions: int = DEFAULT_MAX_QUESTIONS
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    # The checkpoint's image processor rescale and normalization (transformers' defaults for BLIP), which the image
    # encoder's artifact applies to uint8 pixels inside its graph.
    pixel_rescale: float = 1 / 255
    pixel_mean: tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073)
    pixel_std: tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711)
    # The processor's resize (Pillow's filter number; 3 is bicubic) and its transparency-onto-white step, which a
    # stub and the API tier both apply before the artifact (``PixelSettings``).
    pixel_resample: int = 3
    pixel_convert_rgb: bool = True
    components: dict[str, ComponentSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("question_buckets", "image_batch_buckets", "question_batch_buckets"):
            buckets = tuple(int(b) for b in getattr(self, name))
            if not buckets or list(buckets) != sorted(set(buckets)) or buckets[0] < 1:
                raise ValueError(f"{name} must be distinct positive sizes in ascending order, got {buckets}")
            object.__setattr__(self, name, buckets)
        if self.yes_token_id == self.no_token_id:
            raise ValueError(f"yes_token_id and no_token_id are both {self.yes_token_id}")
        if self.answer_tokens < 2:
            raise ValueError(f"answer_tokens must be at least 2 ([DEC] and one token), got {self.answer_tokens}")
        if self.max_questions < 1:
            raise ValueError(f"max_questions must be at least 1, got {self.max_questions}")
        for name in ("pixel_mean", "pixel_std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) != self.num_channels:
                raise ValueError(f"{name} has {len(values)} values for {self.num_channels} channels")
            object.__setattr__(self, name, values)
        if any(v == 0 for v in self.pixel_std):
            raise ValueError(f"pixel_std has a zero: {self.pixel_std}")
        object.__setattr__(self, "components", self._build_components())

    @classmethod
    def from_model_config(
        cls,
        config: Any,
        *,
        max_length: int,
        yes_token_id: int,
        no_token_id: int,
        question_buckets: tuple[int, ...] = DEFAULT_QUESTION_BUCKETS,
        image_batch_buckets: tuple[int, ...] = DEFAULT_IMAGE_BATCH_BUCKETS,
        question_batch_buckets: tuple[int, ...] = DEFAULT_QUESTION_BATCH_BUCKETS,
        max_questions: int = DEFAULT_MAX_QUESTIONS,
        pixel_normalization: tuple[float, tuple[float, ...], tuple[float, ...]] | None = None,
        pixel_resize: tuple[int, bool] | None = None,
    ) -> BlipSpec:
        """Read the shapes from a ``BlipConfig``, the decoder's generation length and the yes/no token ids;
        ``pixel_normalization`` is the image processor's (rescale, mean, std), ``pixel_resize`` its (filter,
        convert to RGB)."""
        vision, text = config.vision_config, config.text_config
        height, width = _pair(vision.image_size)
        patch_h, patch_w = _pair(vision.patch_size)
        limit = text.max_position_embeddings
        for what, value in (("longest question bucket", max(question_buckets)), ("max_length", max_length)):
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
            answer_tokens=max_length,
            bos_token_id=text.bos_token_id,
            sep_token_id=text.sep_token_id,
            pad_token_id=text.pad_token_id,
            yes_token_id=yes_token_id,
            no_token_id=no_token_id,
            question_buckets=tuple(question_buckets),
            image_batch_buckets=tuple(image_batch_buckets),
            question_batch_buckets=tuple(question_batch_buckets),
            max_questions=max_questions,
            **(
                dict(zip(("pixel_rescale", "pixel_mean", "pixel_std"), pixel_normalization))
                if pixel_normalization
                else {}
            ),
            **(dict(zip(("pixel_resample", "pixel_convert_rgb"), pixel_resize)) if pixel_resize else {}),
        )

    @classmethod
    def for_sizing(cls, **shapes: Any) -> BlipSpec:
        """A spec that only sizes tensors (the plan's memory estimate, before any checkpoint is loaded): token ids
        change no shape, so placeholders stand in for them."""
        return cls(
            **{"bos_token_id": 0, "sep_token_id": 0, "pad_token_id": 0, "yes_token_id": 1, "no_token_id": 2} | shapes
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("components", None)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlipSpec:
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})

    @property
    def question_tokens(self) -> int:
        """The longest question, in tokens ([CLS] and [SEP] included), that a request may send."""
        return self.question_buckets[-1]

    @property
    def decode_lengths(self) -> tuple[int, ...]:
        """Lengths the answer buffer takes, step by step: short ones for yes/no answers, then the full length."""
        return tuple(sorted({*(n for n in DEFAULT_SHORT_DECODE_LENGTHS if n < self.answer_tokens), self.answer_tokens}))

    def question_bucket(self, tokens: int) -> int:
        """The smallest question bucket that holds ``tokens``."""
        return smallest_bucket(self.question_buckets, tokens, "question tokens")

    @property
    def max_frames(self) -> int:
        """Frames one execute of any served model takes (Triton's max_batch_size): the largest frame bucket."""
        return self.image_batch_buckets[-1]

    def model_tensors(self, name: str) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """(inputs, outputs) of a Python-backend model: a component, or colocated ``blip_vqa``, which takes either
        form of the frame (its ``blip_vqa_pixels`` ensemble sends PIXELS, callers of ``blip_vqa`` IMAGE)."""
        if name == PUBLIC_MODEL:
            return (*self.frame_inputs, PUBLIC_INPUTS[1]), self.ensemble_outputs
        component = self.components[name]
        return component.inputs, component.outputs

    def public_inputs(self, name: str) -> tuple[TensorSpec, ...]:
        """The inputs of a public model (an ensemble: none optional): ``blip_vqa`` or ``blip_vqa_pixels``."""
        if name == PIXEL_MODEL:
            return pixel_inputs(self.pixel_shape)
        if name == PUBLIC_MODEL:
            return PUBLIC_INPUTS
        raise KeyError(f"{name} is not a public model")

    @property
    def frame_inputs(self) -> tuple[TensorSpec, ...]:
        """The two forms of a frame a Python-backend model takes, exactly one per request: IMAGE or PIXELS."""
        image = PUBLIC_INPUTS[0]
        pixels = pixel_inputs(self.pixel_shape)[0]
        return (
            TensorSpec(image.name, image.dtype, image.dims, optional=True),
            TensorSpec(pixels.name, pixels.dtype, pixels.dims, optional=True),
        )

    @property
    def pixel_shape(self) -> tuple[int, int, int]:
        return (self.image_height, self.image_width, self.num_channels)

    def pixel_settings(self, fast: bool = False) -> PixelSettings:
        """How a frame becomes this model's pixels: what a fleet's ``blip_vqa_pixels`` config tells the API tier."""
        return PixelSettings(
            height=self.image_height,
            width=self.image_width,
            resample=self.pixel_resample,
            convert_rgb=self.pixel_convert_rgb,
            fast=fast,
            max_image_bytes=self.max_image_bytes,
            max_image_pixels=self.max_image_pixels,
        )

    @property
    def ensemble_inputs(self) -> tuple[TensorSpec, ...]:
        return PUBLIC_INPUTS

    @property
    def ensemble_outputs(self) -> tuple[TensorSpec, ...]:
        return PUBLIC_OUTPUTS

    def _build_components(self) -> dict[str, ComponentSpec]:
        questions = self.ensemble_inputs[1]
        answers, scores = self.ensemble_outputs
        c, h, w = self.num_channels, self.image_height, self.image_width
        p, dv, dt = self.image_tokens, self.vision_hidden_size, self.text_hidden_size
        question_axes = (BATCH, QUESTION_TOKENS)
        # Every served model batches frames (dynamic batcher): wire dims leave the batch (one frame a request) out.
        image_embeds = TensorSpec(IMAGE_EMBEDS, "FP32", (p, dv))
        question_embeds = TensorSpec(QUESTION_EMBEDS, "FP32", (-1, -1, dt), (*question_axes, None))
        question_mask = TensorSpec(QUESTION_MASK, "INT64", (-1, -1), question_axes)

        def buckets(**axes: tuple[int, ...]) -> tuple[dict[str, int], ...]:
            combinations: list[dict[str, int]] = [{}]
            for axis, sizes in axes.items():
                combinations = [c | {axis: size} for c in combinations for size in sizes]
            return tuple(combinations)

        return {
            IMAGE_ENCODER: ComponentSpec(
                name=IMAGE_ENCODER,
                inputs=self.frame_inputs,
                outputs=(image_embeds,),
                # uint8 pixels, channels last as decoded: the artifact rescales and normalizes them in its graph.
                traced_inputs=(TensorSpec("pixels", "UINT8", (-1, h, w, c), (BATCH, None, None, None)),),
                traced_outputs=(TensorSpec("image_embeds", "FP32", (-1, p, dv), (BATCH, None, None)),),
                shape_buckets=buckets(batch=self.image_batch_buckets),
            ),
            TEXT_ENCODER: ComponentSpec(
                name=TEXT_ENCODER,
                inputs=(questions, image_embeds),
                outputs=(question_embeds, question_mask),
                traced_inputs=(
                    TensorSpec("input_ids", "INT64", (-1, -1), question_axes),
                    TensorSpec("attention_mask", "INT64", (-1, -1), question_axes),
                    # Every frame of the call once; each question names its frame in frame_index.
                    TensorSpec("image_embeds", "FP32", (-1, p, dv), (FRAMES, None, None)),
                    TensorSpec("frame_index", "INT64", (-1,), (BATCH,)),
                ),
                traced_outputs=(TensorSpec("question_embeds", "FP32", (-1, -1, dt), (*question_axes, None)),),
                shape_buckets=buckets(
                    batch=self.question_batch_buckets,
                    question_tokens=self.question_buckets,
                    frames=self.image_batch_buckets,
                ),
            ),
            TEXT_DECODER: ComponentSpec(
                name=TEXT_DECODER,
                inputs=(question_embeds, question_mask),
                outputs=(answers, scores),
                traced_inputs=(
                    TensorSpec("decoder_input_ids", "INT64", (-1, -1), (BATCH, ANSWER_TOKENS)),
                    TensorSpec("position", "INT64", (1,)),
                    TensorSpec("question_embeds", "FP32", (-1, -1, dt), (*question_axes, None)),
                    TensorSpec("question_mask", "INT64", (-1, -1), question_axes),
                ),
                traced_outputs=(TensorSpec("next_token_logits", "FP32", (-1, self.vocab_size), (BATCH, None)),),
                shape_buckets=buckets(
                    batch=self.question_batch_buckets,
                    question_tokens=self.question_buckets,
                    answer_tokens=self.decode_lengths,
                ),
            ),
        }

    def full_sizes(self, sizes: dict[str, int] | None = None) -> dict[str, int]:
        """Axis sizes with the largest bucket wherever ``sizes`` does not say."""
        return {
            BATCH: 2,
            FRAMES: 2,
            QUESTION_TOKENS: self.question_tokens,
            ANSWER_TOKENS: self.answer_tokens,
        } | (sizes or {})

    def example_inputs(self, component: str, sizes: dict[str, int] | None = None, seed: int = 0) -> tuple[Any, ...]:
        """Pseudo inputs for tracing and verification, built from the traced shapes at the given axis sizes.

        The masks are ragged (real padding) and token ids are drawn from the vocabulary, so a trace that baked
        in an all-ones mask or one batch size fails verification on another seed or batch.
        """
        import torch

        generator = torch.Generator().manual_seed(seed)
        full = self.full_sizes(sizes)
        tensors = []
        for spec in self.components[component].traced_inputs:
            shape = spec.shape(full)
            if spec.name == "position":
                last = full[ANSWER_TOKENS]
                tensors.append(torch.tensor([int(torch.randint(0, last, (1,), generator=generator))]))
            elif spec.name == "frame_index":
                # Questions grouped by frame, every frame used at least once where there are enough questions.
                frames = full[FRAMES]
                tensors.append(torch.arange(shape[0]) * frames // max(shape[0], 1))
            elif spec.dtype == "UINT8":
                tensors.append(torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8))
            elif spec.name.endswith("mask"):
                lengths = torch.randint(2, shape[1] + 1, (shape[0],), generator=generator)
                tensors.append((torch.arange(shape[1])[None, :] < lengths[:, None]).long())
            elif spec.dtype == "INT64":
                tensors.append(torch.randint(0, self.vocab_size, shape, generator=generator))
            else:
                tensors.append(torch.randn(shape, generator=generator))
        return tuple(tensors)


def smallest_bucket(buckets: tuple[int, ...], size: int, what: str) -> int:
    """The smallest of ascending ``buckets`` that holds ``size``; padding up to it is what static shapes cost."""
    for bucket in buckets:
        if size <= bucket:
            return bucket
    raise ValueError(f"{size} {what} exceed the largest bucket {buckets[-1]}")


def batch_chunks(buckets: tuple[int, ...], rows: int) -> list[tuple[int, int]]:
    """How a static build runs ``rows``: (real rows, bucket) per call. Chunks of the largest bucket, the rest
    padded up to the smallest bucket that holds it; each call runs ``bucket`` rows and keeps ``real`` of them."""
    chunks, start = [], 0
    while start < rows:
        real = min(buckets[-1], rows - start)
        chunks.append((real, smallest_bucket(buckets, real, "rows")))
        start += real
    return chunks


def _pair(value: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    height, width = value
    return int(height), int(width)
