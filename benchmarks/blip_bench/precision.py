"""`python -m blip_bench.precision`: how answers and scores move when matrix multiplications run in fp16 or bf16.

neuronx-cc casts matrix multiplications to a narrower type with ``--auto-cast matmult --auto-cast-type fp16|bf16``
(the Neuron docs suggest bf16 where the value range is unknown: fp16 overflows beyond +-65504; the Tomofun case
study ran fp16). No Inferentia runs here, so the cast is emulated on the CPU with ``torch.autocast``, which runs
linear layers and matmuls in the narrow type and the rest in fp32, and each answer and score is compared with fp32
``generate()`` over the project's test images and questions. Writes ``benchmarks/results/precision-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from blip_bench.corpus import corpus_images
from blip_bench.frames import BEHAVIOR_QUESTIONS, RESULTS, SAVED_RANDOM_BASE
from blip_bench.machine import machine
from blip_bench.parity import PARITY_QUESTIONS, reference_answers, word_agreement
from blip_contract.version import add_version_option

CAST_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def compare(reference: list[dict], cast: list[dict]) -> dict:
    matching, total = word_agreement([r["answer"] for r in reference], [c["answer"] for c in cast])
    deltas = [abs(r["score"] - c["score"]) for r, c in zip(reference, cast, strict=True)]
    return {
        "answers": len(reference),
        "answers_equal": sum(r["answer"] == c["answer"] for r, c in zip(reference, cast, strict=True)),
        "word_agreement": round(matching / total, 5),
        "max_abs_score_delta": round(max(deltas), 6),
        "mean_abs_score_delta": round(sum(deltas) / len(deltas), 6),
        "alerts_flipped": sum((r["score"] >= 0.5) != (c["score"] >= 0.5) for r, c in zip(reference, cast, strict=True)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blip-precision", description=__doc__)
    parser.add_argument(
        "--checkpoint",
        default=str(SAVED_RANDOM_BASE),
        help="a saved checkpoint directory (make bench saves random-base there) or a hub id",
    )
    parser.add_argument("--images", type=int, default=0, help="the first N test images only (0: all)")
    parser.add_argument("--out", type=Path, default=RESULTS / "precision-cpu.json")
    args = add_version_option(parser).parse_args(argv)
    images = corpus_images(args.images)
    questions = tuple(dict.fromkeys(BEHAVIOR_QUESTIONS + PARITY_QUESTIONS))
    started = time.perf_counter()
    reference = reference_answers(args.checkpoint, images, questions, "cpu")
    report: dict = {
        "machine": machine(),
        "checkpoint": args.checkpoint,
        "images": len(images),
        "questions": list(questions),
        "emulation": "torch.autocast('cpu', dtype) around generate(): linear layers and matmuls in the cast type",
        "casts": {},
    }
    print(f"fp32 reference: {len(reference)} answers in {time.perf_counter() - started:.0f} s", flush=True)
    for name, dtype in CAST_TYPES.items():
        report["casts"][name] = compare(reference, reference_answers(args.checkpoint, images, questions, "cpu", dtype))
        print(f"{name}: {report['casts'][name]} ({time.perf_counter() - started:.0f} s)", flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
