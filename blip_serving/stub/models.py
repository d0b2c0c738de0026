"""Inside the Triton stub: what each of the three component models does, with no Triton types in sight.

Each component model validates a request at the boundary and does its per-request host work there (``prepare``:
decode and resize a frame, tokenize questions; raising ``InvalidInputError``), then runs all valid requests of an
``execute`` call together (``run``: concatenate, one artifact call, split). Every served model batches frames of
concurrent requests, one frame a request: each wire tensor has a leading batch dimension of 1. The Triton glue is
``blip_serving.stub.triton_adapter``; tests and benchmarks call these models directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from blip_images.decode import decode_image
from blip_images.resize import Resizer
from blip_serving.errors import InvalidInputError
from blip_serving.manifest import Manifest, verify_artifact_files
from blip_serving.spec import (
    ANSWERS,
    IMAGE,
    IMAGE_EMBEDS,
    IMAGE_ENCODER,
    PIXELS,
    PUBLIC_MODEL,
    QUESTION_EMBEDS,
    QUESTION_MASK,
    QUESTIONS,
    SCORES,
    SCORES_ONLY,
    TEXT_DECODER,
    TEXT_ENCODER,
    BlipSpec,
)
from blip_serving.stub.generation import first_step, greedy_decode, yes_probability
from blip_serving.stub.questions import CheckpointTokenizer, QuestionTokenizer, decode_questions
from blip_serving.stub.references import check_reference
from blip_serving.stub.runners import ImageEncoderRunner, TextDecoderRunner, TextEncoderRunner
from blip_serving.targets import Target

Outputs = dict[str, "np.ndarray | torch.Tensor"]
Parameters = Mapping[str, Any]


_TORCH_DTYPES = {np.float32: torch.float32, np.int64: torch.int64, np.uint8: torch.uint8}


@dataclass(frozen=True)
class ServingOptions:
    """How a deployment asks the models to serve, beyond the manifest (config parameters, read at load)."""

    # Decode JPEGs at a reduced DCT scale and reduce before the bicubic pass: less host work for large frames,
    # pixels no longer the checkpoint processor's exactly (make bench's host section measures the agreement).
    fast_resize: bool = False


def _expect(tensor: torch.Tensor, name: str, shape: tuple[int, ...], dtype: Any) -> torch.Tensor:
    """Check a tensor from another step (``-1`` matches any size): a mismatch is a caller's error, not a crash."""
    expected = _TORCH_DTYPES[dtype]
    if tensor.dtype != expected:
        raise InvalidInputError(
            f"{name} has dtype {str(tensor.dtype).removeprefix('torch.')}, expected {np.dtype(dtype)}"
        )
    if tensor.dim() != len(shape) or any(e not in (-1, a) for a, e in zip(tensor.shape, shape)):
        raise InvalidInputError(f"{name} has shape {list(tensor.shape)}, expected {list(shape)}")
    return tensor


def scores_only(parameters: Parameters) -> bool:
    """The ``scores_only`` request parameter (JSON boolean); absent means answers and scores."""
    value = parameters.get(SCORES_ONLY, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise InvalidInputError(f"request parameter {SCORES_ONLY} must be true or false, got {value!r}")
    return value


class ComponentModel(ABC):
    """One split component served from its artifact(s); ``name`` is the component (and Triton model) name."""

    name: ClassVar[str]
    runner_type: ClassVar[type]

    @property
    def components(self) -> tuple[str, ...]:
        """The components whose artifacts this model runs: itself."""
        return (self.name,)

    def __init__(self, manifest: Manifest, target: Target, device: str, options: ServingOptions | None = None) -> None:
        self.options = options or ServingOptions()
        self.spec: BlipSpec = manifest.spec
        files = verify_artifact_files(manifest, self.name, target.name)
        # The manifest's own settings decide the dtype (an fp16 build runs in half), not the config's target.
        built = manifest.target
        unverified = manifest.unverified_files(self.name)
        loaded = [(sizes, path, target.load(str(path), device)) for sizes, path in files]
        for _, path, module in loaded:
            if path in unverified:  # compiled where it could not run: checked here, on the device, before serving
                check_reference(module, path, built.tolerance, device)
        self.runner = self.runner_type.from_artifacts(
            [(sizes, module) for sizes, _, module in loaded],
            self.spec.components[self.name],
            device,
            built.float_dtype,
        )

    @abstractmethod
    def prepare(self, inputs: Mapping[str, Any], parameters: Parameters) -> Any:
        """Validate and convert one request's inputs; raise ``InvalidInputError`` naming what is wrong."""

    @abstractmethod
    def run(self, items: list[Any]) -> list[Outputs]:
        """Run every prepared request at once; one output dict per item, in order."""


class PreparedQuestions(NamedTuple):
    """A text-encoder request, prepared: its questions' tokens and the frame's image embeddings."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    image_embeds: torch.Tensor


class PreparedEmbeds(NamedTuple):
    """A text-decoder request, prepared: its questions' encodings, their mask, and whether it wants scores only."""

    question_embeds: torch.Tensor
    question_mask: torch.Tensor
    scores_only: bool


class PreparedFrame(NamedTuple):
    """A ``blip_vqa`` request in one process, prepared: resized pixels, question tokens, scores-only flag."""

    pixels: np.ndarray
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    scores_only: bool


class ImageEncoderModel(ComponentModel):
    name = IMAGE_ENCODER
    runner_type = ImageEncoderRunner

    def __init__(self, manifest: Manifest, target: Target, device: str, options: ServingOptions | None = None) -> None:
        super().__init__(manifest, target, device, options)
        self.settings = self.spec.pixel_settings(self.options.fast_resize)
        self.resize = Resizer(self.settings)

    def prepare(self, inputs: Mapping[str, Any], parameters: Parameters) -> np.ndarray:
        """IMAGE [1, 1] -> the upright frame resized to the artifact's input, uint8 [H, W, C]; or PIXELS
        [1, H, W, C], resized already by the API tier with this fleet's settings, checked and passed on."""
        image, pixels = inputs.get(IMAGE), inputs.get(PIXELS)
        if (image is None) == (pixels is None):
            raise InvalidInputError(
                f"send exactly one of {IMAGE} (the encoded frame) and {PIXELS} (uint8 [1, {self.spec.image_height}, "
                f"{self.spec.image_width}, {self.spec.num_channels}]), got {'both' if image is not None else 'neither'}"
            )
        if pixels is not None:
            return _expect(pixels, PIXELS, (1, *self.settings.shape), np.uint8)[0].cpu().numpy()
        raw = np.asarray(image, dtype=object).reshape(-1)
        if raw.size != 1:
            raise InvalidInputError(
                f"IMAGE must hold exactly one encoded image per request (shape [1, 1]), got {raw.size}; the server "
                "batches concurrent requests itself"
            )
        data = raw[0] if isinstance(raw[0], bytes) else bytes(raw[0])
        settings = self.settings
        picture = decode_image(
            data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels, draft=self.resize.draft
        )
        return self.resize(picture)

    def run(self, items: list[np.ndarray]) -> list[Outputs]:
        # The dynamic batcher hands over several frames: one artifact call, each request gets its own row.
        embeds = self.runner.encode(torch.from_numpy(np.stack(items)))
        if embeds.shape[0] != len(items):
            raise RuntimeError(f"image encoder returned {embeds.shape[0]} rows for {len(items)} images")
        return [{IMAGE_EMBEDS: embeds[index : index + 1]} for index in range(len(items))]


class TextEncoderModel(ComponentModel):
    name = TEXT_ENCODER
    runner_type = TextEncoderRunner

    def __init__(self, manifest: Manifest, target: Target, device: str, options: ServingOptions | None = None) -> None:
        super().__init__(manifest, target, device, options)
        self.tokenize = QuestionTokenizer(CheckpointTokenizer(manifest.processor_dir), self.spec.question_buckets)

    def prepare_questions(self, raw: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """QUESTIONS (BYTES) -> token ids and mask padded to the smallest bucket that holds the longest."""
        return self.tokenize(decode_questions(raw, max_questions=self.spec.max_questions))

    def prepare(self, inputs: Mapping[str, Any], parameters: Parameters) -> PreparedQuestions:
        input_ids, attention_mask = self.prepare_questions(inputs[QUESTIONS])
        shape = (1, self.spec.image_tokens, self.spec.vision_hidden_size)
        image_embeds = _expect(inputs[IMAGE_EMBEDS], IMAGE_EMBEDS, shape, np.float32)
        return PreparedQuestions(input_ids, attention_mask, image_embeds)

    def run(self, items: list[PreparedQuestions]) -> list[Outputs]:
        """Every frame's questions in one artifact call (up to the largest frame bucket at a time); each frame's
        image keys and values are projected once and shared by its questions."""
        outputs: list[Outputs] = []
        step = self.spec.max_frames
        for start in range(0, len(items), step):
            outputs.extend(self._run_frames(items[start : start + step]))
        return outputs

    def _run_frames(self, items: list[PreparedQuestions]) -> list[Outputs]:
        counts = [item.input_ids.shape[0] for item in items]
        length = max(item.input_ids.shape[1] for item in items)
        input_ids = torch.cat([_pad_tokens(item.input_ids, length, self.spec.pad_token_id) for item in items])
        mask = torch.cat([_pad_tokens(item.attention_mask, length) for item in items])
        frames = torch.cat([item.image_embeds.reshape(1, *item.image_embeds.shape[-2:]) for item in items])
        frame_index = torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts))
        encoded = self.runner.encode(input_ids, mask, frames, frame_index)  # the runner moves them to its device
        outputs, start = [], 0
        for item, count in zip(items, counts):
            # Each request gets its questions at its own token bucket, as if it had run alone.
            own = encoded[start : start + count, : item.input_ids.shape[1]]
            outputs.append({QUESTION_EMBEDS: own[None], QUESTION_MASK: item.attention_mask[None]})
            start += count
        return outputs


class TextDecoderModel(ComponentModel):
    """Scores every question from the first step; questions of answer-mode requests go on to greedy answers."""

    name = TEXT_DECODER
    runner_type = TextDecoderRunner

    def __init__(self, manifest: Manifest, target: Target, device: str, options: ServingOptions | None = None) -> None:
        super().__init__(manifest, target, device, options)
        # Measured in `make bench`: growing the buffer beats a fixed full-length one; exact lengths need a
        # shape-polymorphic build, buckets work everywhere.
        policy = "bucketed" if self.runner.static else "exact"
        self.runner.configure(self.spec.decode_lengths, policy)
        self.tokenizer = CheckpointTokenizer(manifest.processor_dir)

    def prepare(self, inputs: Mapping[str, Any], parameters: Parameters) -> PreparedEmbeds:
        d = self.spec.text_hidden_size
        embeds = _expect(inputs[QUESTION_EMBEDS], QUESTION_EMBEDS, (1, -1, -1, d), np.float32)[0]
        mask = _expect(inputs[QUESTION_MASK], QUESTION_MASK, (1, -1, -1), np.int64)[0]
        if embeds.shape[:2] != mask.shape or not 1 <= embeds.shape[0] <= self.spec.max_questions:
            raise InvalidInputError(
                f"{QUESTION_EMBEDS} has shape {list(embeds.shape)} and {QUESTION_MASK} {list(mask.shape)}; expected "
                f"the same questions and tokens, 1 to {self.spec.max_questions} questions"
            )
        if embeds.shape[1] not in self.spec.question_buckets:
            raise InvalidInputError(
                f"{QUESTION_EMBEDS} has {embeds.shape[1]} tokens; the question buckets are {list(self.spec.question_buckets)}"
            )
        return PreparedEmbeds(embeds, mask, scores_only(parameters))

    def run(self, items: list[PreparedEmbeds]) -> list[Outputs]:
        counts = [item.question_embeds.shape[0] for item in items]
        length = max(item.question_embeds.shape[1] for item in items)
        embeds = torch.cat([_pad_tokens(item.question_embeds, length) for item in items])
        mask = torch.cat([_pad_tokens(item.question_mask, length) for item in items])
        step = self.runner.next_token_logits
        logits = first_step(step, embeds, mask, self.spec)
        scores = yes_probability(logits, self.spec)
        wants_answers = torch.tensor([not item.scores_only for item, n in zip(items, counts) for _ in range(n)])
        answers: list[str] = []
        if bool(wants_answers.any()):
            rows = wants_answers.nonzero().squeeze(1)
            tokens = greedy_decode(step, embeds[rows], mask[rows], self.spec, first_logits=logits[rows])
            answers = self.tokenizer.decode(tokens)
        outputs, start, answered = [], 0, 0
        for item, count in zip(items, counts):
            output: Outputs = {SCORES: scores[start : start + count][None]}
            if not item.scores_only:
                chunk = answers[answered : answered + count]
                output[ANSWERS] = np.array([[a.encode("utf-8") for a in chunk]], dtype=np.object_)
                answered += count
            outputs.append(output)
            start += count
        if start != scores.shape[0] or answered != len(answers):
            raise RuntimeError(f"split {start} scores and {answered} answers from {scores.shape[0]} and {len(answers)}")
        return outputs


def _pad_tokens(tensor: torch.Tensor, length: int, value: int = 0) -> torch.Tensor:
    """Pad dim 1 (question tokens) with ``value`` (zero: masked positions, whatever the embeddings hold there)."""
    missing = length - tensor.shape[1]
    if missing == 0:
        return tensor
    shape = (tensor.shape[0], missing, *tensor.shape[2:])
    padding = torch.full(shape, value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([tensor, padding], dim=1)


COMPONENT_MODELS: dict[str, type[ComponentModel]] = {
    model.name: model for model in (ImageEncoderModel, TextEncoderModel, TextDecoderModel)
}


class PipelineModel:
    """``blip_vqa`` in one process: image encoder -> text encoder -> decoder, the component models chained.

    Same inputs, outputs, request parameters and 400s as the ensemble, because it is the same three models:
    every request is validated up front (image decoded, questions tokenized), then the frames of all valid
    requests are encoded as one batch and the decoder runs all their questions together. The colocated layout
    serves it as ``blip_vqa``; benchmarks and the GPU check run it in process.
    """

    name = PUBLIC_MODEL

    def __init__(self, manifest: Manifest, target: Target, device: str, options: ServingOptions | None = None) -> None:
        models = {name: model(manifest, target, device, options) for name, model in COMPONENT_MODELS.items()}
        self.models: dict[str, ComponentModel] = models
        self.components = tuple(models)
        self.spec: BlipSpec = models[IMAGE_ENCODER].spec
        self.image_encoder = models[IMAGE_ENCODER]
        self.text_encoder: TextEncoderModel = models[TEXT_ENCODER]  # type: ignore[assignment]
        self.text_decoder = models[TEXT_DECODER]

    def prepare(self, inputs: Mapping[str, Any], parameters: Parameters) -> PreparedFrame:
        image = self.image_encoder.prepare(inputs, parameters)
        input_ids, attention_mask = self.text_encoder.prepare_questions(inputs[QUESTIONS])
        return PreparedFrame(image, input_ids, attention_mask, scores_only(parameters))

    def run(self, items: list[PreparedFrame], clock: Callable[[str], None] | None = None) -> list[Outputs]:
        """``clock(stage)``, when given, is called as each stage ends (benchmarks time the split with it)."""
        embeds = self.image_encoder.run([item.pixels for item in items])
        if clock:
            clock(IMAGE_ENCODER)
        encoded = self.text_encoder.run(
            [
                PreparedQuestions(item.input_ids, item.attention_mask, frame[IMAGE_EMBEDS])
                for item, frame in zip(items, embeds)
            ]
        )
        if clock:
            clock(TEXT_ENCODER)
        outputs = self.text_decoder.run(
            [
                PreparedEmbeds(text[QUESTION_EMBEDS][0], text[QUESTION_MASK][0], item.scores_only)
                for item, text in zip(items, encoded)
            ]
        )
        if clock:
            clock(TEXT_DECODER)
        return outputs


def load_models(manifest: Manifest, device_id: int = 0) -> dict[str, ComponentModel]:
    """The three component models in this one process, on the manifest's target (benchmarks, checks)."""
    return load_pipeline(manifest, device_id).models


def load_pipeline(manifest: Manifest, device_id: int = 0, options: ServingOptions | None = None) -> PipelineModel:
    """``blip_vqa`` in this process, on the manifest's target and its device ``device_id``."""
    target = manifest.target
    return PipelineModel(manifest, target, target.load_device(device_id), options)


# Every Python-backend model a repository can serve, by Triton model name: the components (ensemble layout) and
# blip_vqa itself (colocated layout). Each is built as ``model(manifest, target, device)``.
SERVING_MODELS: dict[str, Callable[[Manifest, Target, str, ServingOptions], Any]] = {
    **COMPONENT_MODELS,
    PUBLIC_MODEL: PipelineModel,
}
