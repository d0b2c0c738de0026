"""What one frame costs in this process: multiply-adds, the serving code without a server (the floor), naive
transformers, the answer loop's decode strategies, and the fp32 weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from blip_bench.timing import sequential
from blip_bench.workspace import Workspace
from blip_build.traceable import TRACEABLE_MODULES
from blip_serving.spec import (
    IMAGE,
    IMAGE_EMBEDS,
    IMAGE_ENCODER,
    QUESTIONS,
    SCORES_ONLY,
    TEXT_DECODER,
    TEXT_ENCODER,
)
from blip_serving.stub.generation import answer_buffer, greedy_decode
from blip_serving.stub.models import load_models


def macs_per_frame(workspace: Workspace, questions: tuple[str, ...], scores_only: bool) -> dict[str, float]:
    """Multiply-adds of one frame, counted from the shapes of every op the eager components run."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BlipForQuestionAnswering

    manifest = workspace.manifest
    spec = manifest.spec
    blip = BlipForQuestionAnswering.from_pretrained(manifest.checkpoint_location).eval()
    modules = {name: TRACEABLE_MODULES[name](blip, spec).eval() for name in (IMAGE_ENCODER, TEXT_ENCODER, TEXT_DECODER)}
    from transformers import BlipProcessor

    count = len(questions)
    tokenizer = BlipProcessor.from_pretrained(manifest.processor_dir).tokenizer
    length = spec.question_bucket(max(len(ids) for ids in tokenizer(list(questions))["input_ids"]))
    question_sizes = {"batch": count, "question_tokens": length}
    inputs = {
        IMAGE_ENCODER: spec.example_inputs(IMAGE_ENCODER, {"batch": 1}),
        TEXT_ENCODER: spec.example_inputs(TEXT_ENCODER, question_sizes | {"frames": 1}),
    }
    _, _, embeds, mask = spec.example_inputs(TEXT_DECODER, question_sizes | {"answer_tokens": 1})
    inputs[TEXT_DECODER] = (answer_buffer(count, spec)[:, :1], torch.tensor([0]), embeds, mask)
    macs = {}
    with torch.inference_mode():
        for name, module in modules.items():
            with FlopCounterMode(display=False) as counter:
                module(*inputs[name])
            macs[name] = counter.get_total_flops() / 2
    del blip, modules
    if not scores_only:
        macs["note"] = "answer mode: decoder counted for its first step only"
    return macs


def floor_frame(workspace: Workspace, image: bytes, questions: tuple[str, ...], scores_only: bool):
    """The serving code of the three models, in this process: what Triton runs, minus Triton."""

    models = load_models(workspace.manifest)
    encoded_questions = np.array([q.encode() for q in questions], dtype=object)

    def frame() -> Any:
        image_item = models[IMAGE_ENCODER].prepare({IMAGE: np.array([image], dtype=object)}, {})
        (embeds,) = models[IMAGE_ENCODER].run([image_item])
        text_item = models[TEXT_ENCODER].prepare({QUESTIONS: encoded_questions, IMAGE_EMBEDS: embeds[IMAGE_EMBEDS]}, {})
        (encoded,) = models[TEXT_ENCODER].run([text_item])
        decoder_item = models[TEXT_DECODER].prepare(encoded, {SCORES_ONLY: scores_only})
        return models[TEXT_DECODER].run([decoder_item])[0]

    return frame, models


def decode_strategies(models: dict[str, Any], image: bytes, questions: tuple[str, ...], repeats: int) -> dict:
    """Seconds per frame of the answer loop: fixed full-length buffer vs growing (bucketed, exact) ones."""

    spec = models[TEXT_DECODER].spec
    item = models[IMAGE_ENCODER].prepare({IMAGE: np.array([image], dtype=object)}, {})
    embeds = models[IMAGE_ENCODER].run([item])[0][IMAGE_EMBEDS]
    encoded = np.array([q.encode() for q in questions], dtype=object)
    text = models[TEXT_ENCODER].run([models[TEXT_ENCODER].prepare({QUESTIONS: encoded, IMAGE_EMBEDS: embeds}, {})])[0]
    question_embeds, mask = text["QUESTION_EMBEDS"][0], text["QUESTION_MASK"][0]  # one frame: batch 1
    decoder = models[TEXT_DECODER].runner
    saved = decoder.length_policy
    results: dict[str, dict[str, float]] = {}
    for steps, label in ((2, "yes/no answer (2 steps)"), (spec.answer_tokens - 1, f"{spec.answer_tokens - 1} steps")):
        limited = type(spec).from_dict(spec.to_dict() | {"answer_tokens": steps + 1})
        results[label] = {}
        for policy in ("fixed", "bucketed", "exact"):
            decoder.configure(spec.decode_lengths, policy)
            step = decoder.next_token_logits

            def run(step=step, limited=limited) -> None:
                # The buffer keeps the full length (what "fixed" pads to); the loop stops after ``steps``.
                greedy_decode(lambda t, p, e, m: step(_widen(t, spec), p, e, m), question_embeds, mask, limited)

            results[label][policy] = round(sequential(run, frames=repeats, warmup=1).p50_ms, 2)
    decoder.configure(spec.decode_lengths, saved)
    return results


def _widen(tokens: torch.Tensor, spec: Any) -> torch.Tensor:
    if tokens.shape[1] >= spec.answer_tokens:
        return tokens
    pad = torch.full((tokens.shape[0], spec.answer_tokens - tokens.shape[1]), spec.pad_token_id, dtype=tokens.dtype)
    return torch.cat([tokens, pad], dim=1)


def naive_frame(workspace: Workspace, image: bytes, questions: tuple[str, ...]):
    """What a first version would do: the whole BLIP per question, eager, through ``generate``."""
    import io

    from PIL import Image
    from transformers import BlipForQuestionAnswering, BlipProcessor

    checkpoint = workspace.manifest.checkpoint_location
    model = BlipForQuestionAnswering.from_pretrained(checkpoint).eval()
    processor = BlipProcessor.from_pretrained(checkpoint)

    def frame() -> list[str]:
        picture = Image.open(io.BytesIO(image)).convert("RGB")
        answers = []
        for question in questions:
            inputs = processor(images=picture, text=question, return_tensors="pt")
            with torch.inference_mode():
                output = model.generate(**inputs, max_new_tokens=2)
            answers.append(processor.decode(output[0], skip_special_tokens=True))
        return answers

    return frame, model


def fp32_weight_bytes(workspace: Workspace) -> int:
    from transformers import BlipForQuestionAnswering

    model = BlipForQuestionAnswering.from_pretrained(workspace.manifest.checkpoint_location)
    return sum(p.numel() for p in model.parameters()) * 4
