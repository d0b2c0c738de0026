"""Parity of a build with transformers: the same questions on the same images and device, answer words and scores.

``make gpu-check`` runs it for fp32 (answers and scores equal) and fp16 (answer words and score deltas bounded).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# A behaviour question and two open ones: open answers are longer, so agreement is tested beyond yes/no.
PARITY_QUESTIONS = ("Is the dog barking?", "what is the animal doing?", "how many pets are there?")


def reference_answers(
    checkpoint: str, images: list[Path], questions: tuple[str, ...], device: str, autocast: Any = None
) -> list[dict]:
    """transformers' own ``generate()`` on the device: answer tokens, text and the first step's P(yes).

    ``autocast``: a dtype for ``torch.autocast`` (matrix multiplications in it, as neuronx-cc's ``--auto-cast``
    does), else fp32 throughout."""
    import contextlib

    import torch
    from PIL import Image, ImageOps
    from transformers import BlipForQuestionAnswering, BlipProcessor

    model = BlipForQuestionAnswering.from_pretrained(checkpoint).to(device).eval()
    processor = BlipProcessor.from_pretrained(checkpoint)
    tokenizer = processor.tokenizer
    yes, no = tokenizer.convert_tokens_to_ids(["yes", "no"])
    results = []
    for path in images:
        picture = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        for question in questions:
            inputs = processor(images=picture, text=question, return_tensors="pt").to(device)
            cast = (
                torch.autocast(device.split(":")[0], dtype=autocast)
                if autocast is not None
                else contextlib.nullcontext()
            )
            with torch.inference_mode(), cast:
                output = model.generate(**inputs, output_logits=True, return_dict_in_generate=True)
            first = output.logits[0][0, [yes, no]].float()
            results.append(
                {
                    "image": path.name,
                    "question": question,
                    "answer": processor.decode(output.sequences[0], skip_special_tokens=True),
                    "score": float(torch.softmax(first, dim=-1)[0]),
                }
            )
    del model
    return results


def served_style_answers(manifest: Any, images: list[Path], questions: tuple[str, ...]) -> list[dict]:
    """The serving code in this process (``PipelineModel``): what Triton runs, minus Triton."""
    from blip_serving.stub.models import load_pipeline

    pipeline = load_pipeline(manifest)
    encoded = np.array([q.encode() for q in questions], dtype=object)
    results = []
    for path in images:
        item = pipeline.prepare({"IMAGE": np.array([path.read_bytes()], dtype=object), "QUESTIONS": encoded}, {})
        (output,) = pipeline.run([item])
        scores = output["SCORES"].float().cpu().numpy() if hasattr(output["SCORES"], "cpu") else output["SCORES"]
        # One frame a request: outputs are [1, N].
        for question, answer, score in zip(questions, output["ANSWERS"].reshape(-1), scores.reshape(-1), strict=True):
            results.append({"image": path.name, "question": question, "answer": answer.decode(), "score": float(score)})
    return results


def word_agreement(expected: list[str], actual: list[str]) -> tuple[int, int]:
    """(matching, total) answer words, position by position; a missing or extra word counts as a mismatch.

    Decoded answers are compared word by word (a word is one or more WordPiece tokens): re-tokenizing decoded text
    would split tokens such as ``[unused15]`` into pieces that were never generated.
    """
    matching = total = 0
    for want, got in zip(expected, actual, strict=True):
        a, b = want.split(), got.split()
        total += max(len(a), len(b), 1)
        matching += sum(x == y for x, y in zip(a, b)) + (1 if not a and not b else 0)
    return matching, total


def parity(builds: dict[str, dict[str, Any]], images: list[Path], log: Callable[[str], None]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    models = sorted({key.split("/")[0] for key, b in builds.items() if "manifest" in b})
    for model in models:
        fp32 = builds.get(f"{model}/fp32", {})
        if "manifest" not in fp32:
            continue
        manifest = fp32["manifest"]
        device = manifest.target.load_device(0)
        reference = reference_answers(manifest.checkpoint_location, images, PARITY_QUESTIONS, device)
        for precision in ("fp32", "fp16"):
            entry = builds.get(f"{model}/{precision}", {})
            if "manifest" not in entry:
                continue
            ours = served_style_answers(entry["manifest"], images, PARITY_QUESTIONS)
            expected, actual = [r["answer"] for r in reference], [r["answer"] for r in ours]
            matching, total = word_agreement(expected, actual)
            deltas = [abs(r["score"] - o["score"]) for r, o in zip(reference, ours, strict=True)]
            mismatches = [
                {"image": r["image"], "question": r["question"], "transformers": r["answer"], "ours": o["answer"]}
                for r, o in zip(reference, ours, strict=True)
                if r["answer"] != o["answer"]
            ]
            result = {
                "images": len(images),
                "answers": len(reference),
                "answers_equal": len(reference) - len(mismatches),
                "word_agreement": round(matching / total, 5),
                "max_abs_score_delta": float(max(deltas)),
                "mismatches": mismatches[:5],
            }
            result["goal"] = (
                "answers equal and scores equal (fp32)"
                if precision == "fp32"
                else ">= 99% answer words, max |delta score| <= 0.01"
            )
            result["met"] = (
                not mismatches and result["max_abs_score_delta"] <= 1e-4
                if precision == "fp32"
                else result["word_agreement"] >= 0.99 and result["max_abs_score_delta"] <= 0.01
            )
            report[f"{model}/{precision}"] = result
            entry["in_process"] = ours
            log(
                f"parity {model}/{precision}: {result['answers_equal']}/{result['answers']} answers equal, "
                f"words {result['word_agreement']:.4f}, max |dscore| {result['max_abs_score_delta']:.2e} "
                f"({'met' if result['met'] else 'NOT met'})"
            )
    return report
