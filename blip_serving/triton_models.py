"""What the three Python-backend models do, kept out of model.py so build, tests, benchmarks and serving share it.

Each component model validates a request at the boundary (``prepare``, raising ``InvalidInputError``), then runs
all valid requests of an ``execute`` call together (``run``: concatenate, run once, split). ``TritonComponent``
is the glue to Triton: a bad request gets its own INVALID_ARG error while the rest of the batch succeeds, and an
unexpected failure is logged and answered with INTERNAL instead of killing the stub. Tensors between the steps
cross as DLPack (no numpy round trip; on GPU they stay on the device).
"""

from __future__ import annotations

import json
import os
import traceback
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.dlpack import to_dlpack

from blip_serving.artifacts import Manifest, check_config_matches, read_manifest, verify_artifact_files
from blip_serving.components import ImageEncoderWrapper, TextDecoderWrapper, TextEncoderWrapper
from blip_serving.errors import InvalidInputError
from blip_serving.generation import first_step, greedy_decode, yes_probability
from blip_serving.images import ImagePreprocessor, decode_image
from blip_serving.questions import CheckpointTokenizer, QuestionTokenizer, decode_questions
from blip_serving.spec import (
    ANSWERS,
    IMAGE,
    IMAGE_EMBEDS,
    IMAGE_ENCODER,
    PARAM_ARTIFACT_DIR,
    PARAM_INTRA_OP_THREADS,
    PARAM_NEURON_CORE_END,
    PARAM_NEURON_CORE_START,
    PARAM_TARGET,
    QUESTION_EMBEDS,
    QUESTION_MASK,
    QUESTIONS,
    SCORES,
    SCORES_ONLY,
    TEXT_DECODER,
    TEXT_ENCODER,
    BlipSpec,
)
from blip_serving.targets import NEURON_VISIBLE_CORES_ENV, instance_index, load_artifact, neuron_visible_cores

Outputs = dict[str, "np.ndarray | torch.Tensor"]
Parameters = Mapping[str, Any]


_TORCH_DTYPES = {np.float32: torch.float32, np.int64: torch.int64}


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
    """One split component served from its artifact(s)."""

    component: ClassVar[str]
    wrapper: ClassVar[type]

    def __init__(self, manifest: Manifest, target: str, device: str) -> None:
        self.spec: BlipSpec = manifest.spec
        files = verify_artifact_files(manifest, self.component, target)
        float_dtype = torch.float16 if target == "gpu" and manifest.precision == "fp16" else torch.float32
        self.artifact = self.wrapper.from_artifacts(
            [(sizes, load_artifact(target, str(path), device)) for sizes, path in files],
            self.spec.components[self.component],
            device,
            float_dtype,
        )

    @abstractmethod
    def prepare(self, inputs: Mapping[str, Any], parameters: Parameters) -> Any:
        """Validate and convert one request's inputs; raise ``InvalidInputError`` naming what is wrong."""

    @abstractmethod
    def run(self, items: list[Any]) -> list[Outputs]:
        """Run every prepared request at once; one output dict per item, in order."""


class ImageEncoderModel(ComponentModel):
    component = IMAGE_ENCODER
    wrapper = ImageEncoderWrapper

    def __init__(self, manifest: Manifest, target: str, device: str) -> None:
        super().__init__(manifest, target, device)
        spec = self.spec
        self.preprocess = ImagePreprocessor.from_directory(
            manifest.processor_dir, (spec.num_channels, spec.image_height, spec.image_width)
        )

    def prepare(self, inputs: Mapping[str, Any], parameters: Parameters) -> Any:
        raw = np.asarray(inputs[IMAGE], dtype=object).reshape(-1)
        if raw.size != 1:
            raise InvalidInputError(f"IMAGE must hold exactly one encoded image, got {raw.size} elements")
        data = raw[0] if isinstance(raw[0], bytes) else bytes(raw[0])
        return decode_image(data, max_bytes=self.spec.max_image_bytes, max_pixels=self.spec.max_image_pixels)

    def run(self, items: list[Any]) -> list[Outputs]:
        # The dynamic batcher hands over several frames: one artifact call, each request gets its own row.
        embeds = self.artifact.encode(self.preprocess(items))
        if embeds.shape[0] != len(items):
            raise RuntimeError(f"image encoder returned {embeds.shape[0]} rows for {len(items)} images")
        return [{IMAGE_EMBEDS: embeds[index : index + 1]} for index in range(len(items))]


class TextEncoderModel(ComponentModel):
    component = TEXT_ENCODER
    wrapper = TextEncoderWrapper

    def __init__(self, manifest: Manifest, target: str, device: str) -> None:
        super().__init__(manifest, target, device)
        self.tokenize = QuestionTokenizer(CheckpointTokenizer(manifest.processor_dir), self.spec.question_buckets)

    def prepare(self, inputs: Mapping[str, Any], parameters: Parameters) -> Any:
        questions = decode_questions(inputs[QUESTIONS], max_questions=self.spec.max_questions)
        input_ids, attention_mask = self.tokenize(questions)
        shape = (1, self.spec.image_tokens, self.spec.vision_hidden_size)
        image_embeds = _expect(inputs[IMAGE_EMBEDS], IMAGE_EMBEDS, shape, np.float32)
        return input_ids, attention_mask, image_embeds

    def run(self, items: list[Any]) -> list[Outputs]:
        # Each request is a different frame; its questions share that frame's cross-attention keys and values.
        outputs = []
        for input_ids, attention_mask, image_embeds in items:
            question_embeds = self.artifact.encode(input_ids, attention_mask, image_embeds)
            outputs.append({QUESTION_EMBEDS: question_embeds, QUESTION_MASK: attention_mask})
        return outputs


class TextDecoderModel(ComponentModel):
    """Scores every question from the first step; questions of answer-mode requests go on to greedy answers."""

    component = TEXT_DECODER
    wrapper = TextDecoderWrapper

    def __init__(self, manifest: Manifest, target: str, device: str) -> None:
        super().__init__(manifest, target, device)
        # Measured in `make bench`: growing the buffer beats a fixed full-length one; exact lengths need a
        # shape-polymorphic build, buckets work everywhere.
        policy = "bucketed" if self.artifact.static else "exact"
        self.artifact.configure(self.spec.decode_lengths, policy)
        self.tokenizer = CheckpointTokenizer(manifest.processor_dir)

    def prepare(self, inputs: Mapping[str, Any], parameters: Parameters) -> Any:
        d = self.spec.text_hidden_size
        embeds = _expect(inputs[QUESTION_EMBEDS], QUESTION_EMBEDS, (-1, -1, d), np.float32)
        mask = _expect(inputs[QUESTION_MASK], QUESTION_MASK, (-1, -1), np.int64)
        if embeds.shape[:2] != mask.shape or not 1 <= embeds.shape[0] <= self.spec.max_questions:
            raise InvalidInputError(
                f"{QUESTION_EMBEDS} has shape {list(embeds.shape)} and {QUESTION_MASK} {list(mask.shape)}; expected "
                f"the same questions and tokens, 1 to {self.spec.max_questions} questions"
            )
        if embeds.shape[1] not in self.spec.question_buckets:
            raise InvalidInputError(
                f"{QUESTION_EMBEDS} has {embeds.shape[1]} tokens; the question buckets are {list(self.spec.question_buckets)}"
            )
        return embeds, mask, scores_only(parameters)

    def run(self, items: list[Any]) -> list[Outputs]:
        counts = [embeds.shape[0] for embeds, _, _ in items]
        length = max(embeds.shape[1] for embeds, _, _ in items)
        embeds = torch.cat([_pad_tokens(e, length) for e, _, _ in items])
        mask = torch.cat([_pad_tokens(m, length) for _, m, _ in items])
        step = self.artifact.next_token_logits
        logits = first_step(step, embeds, mask, self.spec)
        scores = yes_probability(logits, self.spec)
        wants_answers = torch.tensor([not only for (_, _, only), n in zip(items, counts) for _ in range(n)])
        answers: list[str] = []
        if bool(wants_answers.any()):
            rows = wants_answers.nonzero().squeeze(1)
            tokens = greedy_decode(step, embeds[rows], mask[rows], self.spec, first_logits=logits[rows])
            answers = self.tokenizer.decode(tokens)
        outputs, start, answered = [], 0, 0
        for (_, _, only), count in zip(items, counts):
            output: Outputs = {SCORES: scores[start : start + count]}
            if not only:
                chunk = answers[answered : answered + count]
                output[ANSWERS] = np.array([a.encode("utf-8") for a in chunk], dtype=np.object_)
                answered += count
            outputs.append(output)
            start += count
        if start != scores.shape[0] or answered != len(answers):
            raise RuntimeError(f"split {start} scores and {answered} answers from {scores.shape[0]} and {len(answers)}")
        return outputs


def _pad_tokens(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Pad dim 1 (question tokens) with zeros: masked positions, whatever the embeddings hold there."""
    missing = length - tensor.shape[1]
    if missing == 0:
        return tensor
    padding = torch.zeros((tensor.shape[0], missing, *tensor.shape[2:]), dtype=tensor.dtype, device=tensor.device)
    return torch.cat([tensor, padding], dim=1)


COMPONENT_MODELS: dict[str, type[ComponentModel]] = {
    model.component: model for model in (ImageEncoderModel, TextEncoderModel, TextDecoderModel)
}


def intra_op_threads(configured: int, instances: int) -> int:
    """Threads per instance: the configured count, else this machine's cores shared evenly by the instances.

    More threads than cores per instance oversubscribes OpenMP, and every request then waits for the slowest
    thread; fewer leaves cores idle at low load.
    """
    if configured > 0:
        return configured
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, instances))


class TritonComponent:
    """The Triton side of a component model: parses ``initialize`` args, isolates errors per request."""

    def __init__(self, model: ComponentModel, pb_utils: Any) -> None:
        self.model = model
        self.pb_utils = pb_utils
        self.logger = pb_utils.Logger
        self.inputs = model.spec.components[model.component].inputs

    @classmethod
    def from_args(cls, component: str, args: Mapping[str, str], pb_utils: Any) -> TritonComponent:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        target = parameters[PARAM_TARGET]
        artifact_dir = Path(args["model_repository"]).parent / parameters[PARAM_ARTIFACT_DIR]
        device = "cpu"
        instances = sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) or 1
        if target == "gpu":
            device = f"cuda:{args.get('model_instance_device_id', '0')}"
        elif target == "neuron":
            # Before torch_neuronx is imported and the NEFF loaded: the runtime reserves cores at that point.
            cores = neuron_visible_cores(
                int(parameters[PARAM_NEURON_CORE_START]),
                int(parameters[PARAM_NEURON_CORE_END]),
                instances,
                instance_index(args.get("model_instance_name", f"{component}_0_0")),
            )
            os.environ[NEURON_VISIBLE_CORES_ENV] = cores
            device = f"neuron cores {cores}"
        threads = intra_op_threads(int(parameters.get(PARAM_INTRA_OP_THREADS, "0") or 0), instances)
        torch.set_num_threads(threads)
        manifest = read_manifest(artifact_dir.resolve())
        check_config_matches(manifest, component, config)
        model = COMPONENT_MODELS[component](manifest, target, "cpu" if target == "neuron" else device)
        files = manifest.artifact_files(component)
        pb_utils.Logger.log_info(
            f"{component}: loaded {len(files)} artifact(s) ({files[0][1].name}...) for {target} on {device}, "
            f"{threads} intra-op thread(s) (checkpoint {manifest.data['checkpoint']['source']})"
        )
        return cls(model, pb_utils)

    def _error(self, message: str, code_name: str) -> Any:
        error_type = self.pb_utils.TritonError
        return self.pb_utils.InferenceResponse(
            output_tensors=[], error=error_type(message, getattr(error_type, code_name))
        )

    def _read_inputs(self, request: Any) -> dict[str, Any]:
        """BYTES as numpy objects; numeric tensors through DLPack, without a copy (on the GPU where they are)."""
        inputs: dict[str, Any] = {}
        for spec in self.inputs:
            tensor = self.pb_utils.get_input_tensor_by_name(request, spec.name)
            if tensor is None:
                raise InvalidInputError(f"input {spec.name} is missing")
            inputs[spec.name] = tensor.as_numpy() if spec.dtype == "BYTES" else torch.from_dlpack(tensor.to_dlpack())
        return inputs

    def _read_parameters(self, request: Any) -> dict[str, Any]:
        raw = request.parameters() if hasattr(request, "parameters") else "{}"
        try:
            parameters = json.loads(raw or "{}")
        except json.JSONDecodeError as error:
            raise InvalidInputError(f"request parameters are not valid JSON: {error}") from error
        return parameters if isinstance(parameters, dict) else {}

    def _tensor(self, name: str, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return self.pb_utils.Tensor.from_dlpack(name, to_dlpack(value.contiguous()))
        return self.pb_utils.Tensor(name, np.ascontiguousarray(value))

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        prepared: list[tuple[int, Any]] = []
        for index, request in enumerate(requests):
            try:
                prepared.append((index, self.model.prepare(self._read_inputs(request), self._read_parameters(request))))
            except InvalidInputError as error:
                responses[index] = self._error(str(error), "INVALID_ARG")
            except Exception:
                self.logger.log_error(f"{self.model.component}: preparing request failed\n{traceback.format_exc()}")
                responses[index] = self._error(f"{self.model.component}: internal error preparing request", "INTERNAL")
        if prepared:
            try:
                outputs = self.model.run([item for _, item in prepared])
                if len(outputs) != len(prepared):
                    raise RuntimeError(f"{len(outputs)} outputs for {len(prepared)} requests")
                for (index, _), output in zip(prepared, outputs):
                    tensors = [self._tensor(name, value) for name, value in output.items()]
                    responses[index] = self.pb_utils.InferenceResponse(output_tensors=tensors)
            except Exception:
                self.logger.log_error(f"{self.model.component}: inference failed\n{traceback.format_exc()}")
                for index, _ in prepared:
                    responses[index] = self._error(
                        f"{self.model.component}: internal error during inference", "INTERNAL"
                    )
        return responses
