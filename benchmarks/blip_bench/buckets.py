"""`python -m blip_bench.buckets`: which question-batch buckets fit the behaviour traffic of a static-shape build.

A static build (neuron always; cpu with ``--static-shapes``) has one text-encoder and one decoder artifact per
question-batch bucket, and runs an execute's questions in chunks of the largest bucket, the last chunk padded up
to the smallest bucket that holds it (``blip_serving.spec.batch_chunks``). Too few buckets pad and repeat calls; too
many cost artifacts (on Neuron: a NEFF each, its own weights in device memory, compile time).

For every candidate set this builds random-base for cpu with static shapes and measures:

- cost: the in-process floor per frame at the execute sizes the dynamic batcher forms (1, 4 and 8 frames of 3
  behaviour questions) and one frame of 16 questions (the request limit); calls and padded rows per execute;
  artifacts and their bytes;
- parity: answers and scores of every corpus image (8 frames an execute, behaviour and parity questions) against
  the shape-polymorphic build of the same checkpoint, which runs exact sizes;
- Neuron memory: the placement plan's accelerator estimate per NeuronCore (colocated: every core holds every NEFF)
  for a default build (16- and 32-token question buckets) with these question-batch buckets.

Writes ``benchmarks/results/buckets-cpu.json``. The text artifacts are built for the 16-token question bucket only:
the question-batch axis is what is compared, and every behaviour question fits in 16 tokens.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from blip_bench.corpus import corpus_images
from blip_bench.floor import floor
from blip_bench.frames import BEHAVIOR_QUESTIONS, RESULTS, ROOT, SAVED_RANDOM_BASE
from blip_bench.machine import machine
from blip_bench.parity import PARITY_QUESTIONS
from blip_build import build
from blip_contract import ANSWERS, IMAGE, QUESTIONS, SCORES, SCORES_ONLY
from blip_contract.version import add_version_option
from blip_serving.placement import device_mib, load_catalog
from blip_serving.spec import DEFAULT_IMAGE_BATCH_BUCKETS, BlipSpec, batch_chunks
from blip_serving.stub.models import load_pipeline
from blip_serving.targets import get_target

CANDIDATES = ("4", "4,16", "1,4,8,16", "4,12,24")
QUESTION_TOKENS = (16,)
EXECUTE_FRAMES = (1, 4, 8)
FRAMES_PER_PARITY_EXECUTE = 8
MANY_QUESTIONS = (BEHAVIOR_QUESTIONS * 16)[:16]  # the request limit, behaviour questions repeated


def parse_sets(text: str) -> list[tuple[int, ...]]:
    """``"4 4,16 1,4,8,16"`` -> bucket sets; each ascending and distinct (the spec refuses others at build)."""
    return [tuple(int(size) for size in item.split(",")) for item in text.split()]


def calls(buckets: tuple[int, ...], rows: int) -> dict[str, int]:
    """Artifact calls and rows run (padding included) for ``rows`` questions at one step."""
    chunks = batch_chunks(buckets, rows)
    return {"questions": rows, "calls": len(chunks), "rows_run": sum(size for _, size in chunks)}


def answers(manifest, images: list[Path], questions: tuple[str, ...]) -> list[tuple[str, float]]:
    """Full answers and P(yes) of every (image, question), ``FRAMES_PER_PARITY_EXECUTE`` frames an execute."""
    pipeline = load_pipeline(manifest)
    asked = np.array([q.encode() for q in questions], dtype=object)
    results = []
    for start in range(0, len(images), FRAMES_PER_PARITY_EXECUTE):
        items = [
            pipeline.prepare(
                {IMAGE: np.array([path.read_bytes()], dtype=object), QUESTIONS: asked}, {SCORES_ONLY: False}
            )
            for path in images[start : start + FRAMES_PER_PARITY_EXECUTE]
        ]
        for output in pipeline.run(items):
            texts = [a.decode() if isinstance(a, bytes) else str(a) for a in output[ANSWERS][0]]
            results.extend(zip(texts, (float(s) for s in output[SCORES][0])))
    return results


def compare(reference: list[tuple[str, float]], other: list[tuple[str, float]]) -> dict:
    deltas = [abs(r[1] - o[1]) for r, o in zip(reference, other, strict=True)]
    return {
        "answers": len(reference),
        "answers_equal": sum(r[0] == o[0] for r, o in zip(reference, other, strict=True)),
        "max_abs_score_delta": float(f"{max(deltas):.3g}"),
    }


def neuron_core_mib(buckets: tuple[int, ...]) -> float:
    """The plan's accelerator estimate per NeuronCore, colocated, for a default build with these buckets."""
    model = load_catalog().model
    spec = BlipSpec.for_sizing(**model.shapes, question_batch_buckets=buckets)
    return round(sum(device_mib(spec, get_target("neuron")(), model.weights_mib).values()), 1)


def artifact_counts(manifest) -> dict[str, dict[str, float]]:
    return {
        name: {"artifacts": len(c.files), "mib": round(sum(f.bytes for f in c.files) / 2**20, 1)}
        for name, c in manifest.record.components.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blip-buckets", description=__doc__)
    parser.add_argument(
        "--checkpoint",
        default=str(SAVED_RANDOM_BASE),
        help="a saved checkpoint directory (make bench saves random-base there), random-tiny or random-base",
    )
    parser.add_argument("--sets", type=parse_sets, default=parse_sets(" ".join(CANDIDATES)))
    parser.add_argument("--seconds", type=float, default=8.0, help="floor time per execute size")
    parser.add_argument("--images", type=int, default=0, help="the first N corpus images only (0: all)")
    parser.add_argument("--workspace", type=Path, default=ROOT / ".bench" / "buckets")
    parser.add_argument("--out", type=Path, default=RESULTS / "buckets-cpu.json")
    args = add_version_option(parser).parse_args(argv)
    images = corpus_images(args.images)
    questions = tuple(dict.fromkeys(BEHAVIOR_QUESTIONS + PARITY_QUESTIONS))
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {line}", flush=True)

    def built(name: str, **options) -> object:
        log(f"building {name}")
        return build(
            args.checkpoint,
            "cpu",
            artifacts=args.workspace / name,
            repository=args.workspace / name / "repository",
            question_buckets=QUESTION_TOKENS,
            **options,
        )

    reference = answers(built("polymorphic"), images, questions)
    report: dict = {
        "machine": machine(),
        "checkpoint": args.checkpoint,
        "question_token_buckets": list(QUESTION_TOKENS),
        "image_batch_buckets": list(DEFAULT_IMAGE_BATCH_BUCKETS),
        "parity_images": len(images),
        "parity_questions": list(questions),
        "traffic": f"{len(BEHAVIOR_QUESTIONS)} behaviour questions a frame, scores only; and one frame of 16",
        "sets": {},
    }
    for buckets in args.sets:
        name = ",".join(map(str, buckets))
        folder = args.workspace / f"static-{name.replace(',', '-')}"
        manifest = built(folder.name, static_shapes=True, question_batch_buckets=buckets)
        rows = {
            f"{frames}x{len(BEHAVIOR_QUESTIONS)}": calls(buckets, frames * len(BEHAVIOR_QUESTIONS))
            for frames in EXECUTE_FRAMES
        } | {f"1x{len(MANY_QUESTIONS)}": calls(buckets, len(MANY_QUESTIONS))}
        result = {
            "artifacts": artifact_counts(manifest),
            "calls_per_step": rows,
            "floor": floor(manifest, list(EXECUTE_FRAMES), args.seconds, log)["levels"],
            "floor_16_questions": floor(manifest, [1], args.seconds, log, questions=MANY_QUESTIONS)["levels"],
            "parity": compare(reference, answers(manifest, images, questions)),
            "neuron_core_mib_estimate": neuron_core_mib(buckets),
        }
        report["sets"][name] = result
        log(f"{name}: {json.dumps(result['parity'])}, {json.dumps(result['artifacts'])}")
        shutil.rmtree(folder)  # several GiB of random-base artifacts per set
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
