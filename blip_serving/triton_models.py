"""What the three Python-backend models do, kept out of model.py so build, tests and serving share it.

Each component model validates a request at the boundary (``prepare``, raising ``InvalidInputError``), then runs
all valid requests of an ``execute`` call together (``run``: concatenate, run once, split). ``TritonComponent``
is the glue to Triton: a bad request gets its own INVALID_ARG error while the rest of the batch succeeds, and an
unexpected failure is logged and answered with INTERNAL instead of killing the stub.
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

from blip_serving.artifacts import Manifest, check_config_matches, read_manifest, verify_artifact_file
from blip_serving.components import ImageEncoderWrapper, TextDecoderWrapper, TextEncoderWrapper
from blip_serving.errors import InvalidInputError
from blip_serving.generation import greedy_decode
from blip_serving.images import ImagePreprocessor, decode_image
from blip_serving.questions import QuestionTokenizer, decode_questions
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
    TEXT_DECODER,
    TEXT_ENCODER,
    BlipSpec,
)
from blip_serving.targets import NEURON_VISIBLE_CORES_ENV, instance_index, load_artifact, neuron_visible_cores

Outputs = dict[str, np.ndarray]


def _load_processor(manifest: Manifest) -> Any:
    from transformers import BlipProcessor

    return BlipProcessor.from_pretrained(str(manifest.processor_dir))


def _expect(array: np.ndarray, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Check a tensor from another step (``-1`` matches any size): a mismatch is a caller's error, not a crash."""
    if array.dtype != dtype:
        raise InvalidInputError(f"{name} has dtype {array.dtype}, expected {np.dtype(dtype)}")
    if len(array.shape) != len(shape) or any(e not in (-1, a) for a, e in zip(array.shape, shape)):
        raise InvalidInputError(f"{name} has shape {list(array.shape)}, expected {list(shape)}")
    return array


class ComponentModel(ABC):
    """One split component served from its artifact."""

    component: ClassVar[str]
    wrapper: ClassVar[type]

    def __init__(self, manifest: Manifest, target: str, device: str) -> None:
        self.spec: BlipSpec = manifest.spec
        path = verify_artifact_file(manifest, self.component, target)
        float_dtype = torch.float16 if target == "gpu" and manifest.precision == "fp16" else torch.float32
        self.artifact = self.wrapper.from_model(
            load_artifact(target, str(path), device),
            self.spec.components[self.component],
            device,
            float_dtype,
            manifest.static_batch.get(self.component),
        )

    @abstractmethod
    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Any:
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
        processor = _load_processor(manifest)
        self.preprocess = ImagePreprocessor(
            processor.image_processor, (spec.num_channels, spec.image_height, spec.image_width)
        )

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Any:
        raw = np.asarray(inputs[IMAGE], dtype=object).reshape(-1)
        if raw.size != 1:
            raise InvalidInputError(f"IMAGE must hold exactly one encoded image, got {raw.size} elements")
        data = raw[0] if isinstance(raw[0], bytes) else bytes(raw[0])
        return decode_image(data, max_bytes=self.spec.max_image_bytes, max_pixels=self.spec.max_image_pixels)

    def run(self, items: list[Any]) -> list[Outputs]:
        embeds = self.artifact.encode(self.preprocess(items)).cpu().numpy()
        if embeds.shape[0] != len(items):
            raise RuntimeError(f"image encoder returned {embeds.shape[0]} rows for {len(items)} images")
        return [{IMAGE_EMBEDS: row} for row in embeds]


class TextEncoderModel(ComponentModel):
    component = TEXT_ENCODER
    wrapper = TextEncoderWrapper

    def __init__(self, manifest: Manifest, target: str, device: str) -> None:
        super().__init__(manifest, target, device)
        self.tokenize = QuestionTokenizer(_load_processor(manifest).tokenizer, self.spec.question_tokens)

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Any:
        questions = decode_questions(inputs[QUESTIONS], max_questions=self.spec.max_questions)
        input_ids, attention_mask = self.tokenize(questions)
        shape = (self.spec.image_tokens, self.spec.vision_hidden_size)
        image_embeds = _expect(inputs[IMAGE_EMBEDS], IMAGE_EMBEDS, shape, np.float32)
        return input_ids, attention_mask, torch.from_numpy(image_embeds)

    def run(self, items: list[Any]) -> list[Outputs]:
        # Each request is a different frame; its questions share that frame's cross-attention keys and values.
        outputs = []
        for input_ids, attention_mask, image_embeds in items:
            question_embeds = self.artifact.encode(input_ids, attention_mask, image_embeds)
            outputs.append({QUESTION_EMBEDS: question_embeds.cpu().numpy(), QUESTION_MASK: attention_mask.numpy()})
        return outputs


class TextDecoderModel(ComponentModel):
    component = TEXT_DECODER
    wrapper = TextDecoderWrapper

    def __init__(self, manifest: Manifest, target: str, device: str) -> None:
        super().__init__(manifest, target, device)
        self.tokenizer = _load_processor(manifest).tokenizer

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Any:
        q, d = self.spec.question_tokens, self.spec.text_hidden_size
        embeds = _expect(inputs[QUESTION_EMBEDS], QUESTION_EMBEDS, (-1, q, d), np.float32)
        mask = _expect(inputs[QUESTION_MASK], QUESTION_MASK, (-1, q), np.int64)
        if embeds.shape[0] != mask.shape[0] or not 1 <= embeds.shape[0] <= self.spec.max_questions:
            raise InvalidInputError(
                f"{QUESTION_EMBEDS} has {embeds.shape[0]} rows and {QUESTION_MASK} {mask.shape[0]}; "
                f"expected the same count, 1 to {self.spec.max_questions}"
            )
        return torch.from_numpy(embeds), torch.from_numpy(mask)

    def run(self, items: list[Any]) -> list[Outputs]:
        counts = [embeds.shape[0] for embeds, _ in items]
        embeds = torch.cat([e for e, _ in items])
        mask = torch.cat([m for _, m in items])
        tokens = greedy_decode(self.artifact.next_token_logits, embeds, mask, self.spec)
        answers = self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        outputs, start = [], 0
        for count in counts:
            chunk = answers[start : start + count]
            outputs.append({ANSWERS: np.array([a.encode("utf-8") for a in chunk], dtype=np.object_)})
            start += count
        return outputs


COMPONENT_MODELS: dict[str, type[ComponentModel]] = {
    model.component: model for model in (ImageEncoderModel, TextEncoderModel, TextDecoderModel)
}


class TritonComponent:
    """The Triton side of a component model: parses ``initialize`` args, isolates errors per request."""

    def __init__(self, model: ComponentModel, pb_utils: Any) -> None:
        self.model = model
        self.pb_utils = pb_utils
        self.logger = pb_utils.Logger
        self.input_names = [t.name for t in model.spec.components[model.component].inputs]

    @classmethod
    def from_args(cls, component: str, args: Mapping[str, str], pb_utils: Any) -> TritonComponent:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        target = parameters[PARAM_TARGET]
        artifact_dir = Path(args["model_repository"]).parent / parameters[PARAM_ARTIFACT_DIR]
        device = "cpu"
        if target == "gpu":
            device = f"cuda:{args.get('model_instance_device_id', '0')}"
        elif target == "neuron":
            # Before torch_neuronx is imported and the NEFF loaded: the runtime reserves cores at that point.
            instances = sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) or 1
            cores = neuron_visible_cores(
                int(parameters[PARAM_NEURON_CORE_START]),
                int(parameters[PARAM_NEURON_CORE_END]),
                instances,
                instance_index(args.get("model_instance_name", f"{component}_0_0")),
            )
            os.environ[NEURON_VISIBLE_CORES_ENV] = cores
            device = f"neuron cores {cores}"
        threads = int(parameters.get(PARAM_INTRA_OP_THREADS, "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        manifest = read_manifest(artifact_dir.resolve())
        check_config_matches(manifest, component, config)
        model = COMPONENT_MODELS[component](manifest, target, "cpu" if target == "neuron" else device)
        pb_utils.Logger.log_info(
            f"{component}: loaded {manifest.artifact_path(component)} for {target} on {device} "
            f"(checkpoint {manifest.data['checkpoint']['source']})"
        )
        return cls(model, pb_utils)

    def _error(self, message: str, code_name: str) -> Any:
        error_type = self.pb_utils.TritonError
        return self.pb_utils.InferenceResponse(
            output_tensors=[], error=error_type(message, getattr(error_type, code_name))
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        prepared: list[tuple[int, Any]] = []
        for index, request in enumerate(requests):
            try:
                inputs = {}
                for name in self.input_names:
                    tensor = self.pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is None:
                        raise InvalidInputError(f"input {name} is missing")
                    inputs[name] = tensor.as_numpy()
                prepared.append((index, self.model.prepare(inputs)))
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
                    tensors = [
                        self.pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in output.items()
                    ]
                    responses[index] = self.pb_utils.InferenceResponse(output_tensors=tensors)
            except Exception:
                self.logger.log_error(f"{self.model.component}: inference failed\n{traceback.format_exc()}")
                for index, _ in prepared:
                    responses[index] = self._error(
                        f"{self.model.component}: internal error during inference", "INTERNAL"
                    )
        return responses
