"""Command line of the artifact build: ``python -m blip_build --target cpu --model random-tiny``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from blip_serving.errors import ArtifactError, TargetUnavailableError
from blip_serving.spec import (
    DEFAULT_IMAGE_BATCH_BUCKETS,
    DEFAULT_MAX_QUESTIONS,
    DEFAULT_QUESTION_BATCH_BUCKETS,
    DEFAULT_QUESTION_BUCKETS,
    TARGETS,
)

RANDOM_WARNING = "NOTE: {model} has random weights: it serves real compute, but its answers are meaningless."


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 1,4,8, got {text!r}") from error


def _sizes_option(parser: argparse.ArgumentParser, flag: str, env: str, default: tuple[int, ...], what: str) -> None:
    parser.add_argument(
        flag,
        type=_sizes,
        default=_sizes(os.environ.get(env) or ",".join(map(str, default))),
        help=f"{what} (env {env}, default {','.join(map(str, default))})",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="blip-build", description=__doc__)
    parser.add_argument("--target", choices=TARGETS, default=os.environ.get("TARGET", "cpu"))
    parser.add_argument(
        "--model",
        default=os.environ.get("MODEL", "random-tiny"),
        help="local checkpoint directory, hub id, random-tiny or random-base",
    )
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="root of artifacts/<target>/")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    _sizes_option(
        parser, "--question-buckets", "QUESTION_BUCKETS", DEFAULT_QUESTION_BUCKETS, "question lengths in tokens"
    )
    _sizes_option(
        parser, "--image-batch-buckets", "IMAGE_BATCH_BUCKETS", DEFAULT_IMAGE_BATCH_BUCKETS, "frames per image batch"
    )
    _sizes_option(
        parser,
        "--question-batch-buckets",
        "QUESTION_BATCH_BUCKETS",
        DEFAULT_QUESTION_BATCH_BUCKETS,
        "questions per text batch (static-shape builds)",
    )
    parser.add_argument(
        "--static-shapes",
        action="store_true",
        default=os.environ.get("STATIC_SHAPES") == "1",
        help="one artifact per shape bucket, as neuron always builds (cpu/gpu trace once otherwise)",
    )
    parser.add_argument("--max-questions", type=int, default=DEFAULT_MAX_QUESTIONS, help="questions per request")
    parser.add_argument("--fp16", action="store_true", default=os.environ.get("FP16") == "1", help="gpu only")
    parser.add_argument(
        "--compiler-args",
        default=os.environ.get("NEURON_COMPILER_ARGS") or None,
        help="neuronx-cc arguments for TARGET=neuron (default: --auto-cast matmult --auto-cast-type fp16)",
    )
    parser.add_argument("--force", action="store_true", default=os.environ.get("FORCE") == "1")
    parser.add_argument(
        "--instances",
        type=int,
        default=int(os.environ.get("INSTANCES") or 1),
        help="Triton instances of each component model (config only; no rebuild)",
    )
    parser.add_argument(
        "--neuron-cores-per-instance",
        type=int,
        default=int(os.environ.get("NEURON_CORES_PER_INSTANCE") or 1),
        help="NeuronCores each neuron instance reserves (NEURON_RT_VISIBLE_CORES)",
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=int(os.environ.get("INTRA_OP_THREADS") or 0),
        help="torch threads per instance; 0 shares the cores evenly among a component's instances",
    )
    parser.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=int(os.environ.get("MAX_QUEUE_DELAY_US") or 0),
        help="how long the image encoder's dynamic batcher may wait to fill a batch",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        # Resolve the target first: a missing SDK or GPU stops the build before anything is loaded or written.
        from blip_serving.targets import resolve_target
        from blip_serving.triton_config import Deployment

        target = resolve_target(
            args.target, fp16=args.fp16, compiler_args=args.compiler_args, static_shapes=args.static_shapes
        )
        deployment = Deployment(
            args.instances, args.neuron_cores_per_instance, args.intra_op_threads, args.max_queue_delay_us
        )
    except (TargetUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    # transformers' mask helpers warn about shape checks under tracing; every artifact is verified on other
    # batch sizes and inputs after reloading, which is what would catch a trace that did not generalize.
    import torch

    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    from transformers.utils import logging as hf_logging

    from blip_serving.artifacts import build_target, resolve_max_length, yes_no_token_ids
    from blip_serving.checkpoints import RANDOM_MODELS, load_checkpoint
    from blip_serving.spec import BlipSpec
    from blip_serving.triton_config import write_repository_configs

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    print(f"loading checkpoint {args.model}", flush=True)
    try:
        checkpoint = load_checkpoint(args.model, random_dir=args.artifacts / "checkpoints")
        yes, no = yes_no_token_ids(checkpoint.processor.tokenizer)
        spec = BlipSpec.from_model_config(
            checkpoint.model.config,
            max_length=resolve_max_length(checkpoint.model),
            yes_token_id=yes,
            no_token_id=no,
            question_buckets=args.question_buckets,
            image_batch_buckets=args.image_batch_buckets,
            question_batch_buckets=args.question_batch_buckets,
            max_questions=args.max_questions,
        )
        print(
            f"spec: image {spec.image_height}x{spec.image_width} -> {spec.image_tokens} tokens x "
            f"{spec.vision_hidden_size}, frames batched by {list(spec.image_batch_buckets)}; questions in "
            f"{list(spec.question_buckets)}-token buckets x {spec.text_hidden_size}; answers up to "
            f"{spec.answer_tokens} tokens through buffers of {list(spec.decode_lengths)}; vocabulary "
            f"{spec.vocab_size}; yes/no token ids {yes}/{no}",
            flush=True,
        )
        out_dir = args.artifacts / args.target
        saved = checkpoint.path if args.model in RANDOM_MODELS else None
        manifest = build_target(
            checkpoint,
            spec,
            target,
            out_dir,
            force=args.force,
            saved_checkpoint=saved,
            progress=lambda line: print(line, flush=True),
        )
        configs = write_repository_configs(spec, args.target, args.repository, out_dir, deployment)
    except (ArtifactError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"wrote {manifest.directory / 'manifest.json'} and {len(configs)} configs ({args.repository}/*/configs/{args.target}.pbtxt)"
    )
    if args.target == "neuron":
        print(
            f"neuron: {deployment.neuron_cores_needed} NeuronCores needed "
            f"({args.instances} instance(s) x {args.neuron_cores_per_instance} core(s) x 3 components); "
            f"blocks {deployment.neuron_core_blocks()}"
        )
    if args.model in RANDOM_MODELS:
        print(f"saved checkpoint for comparison with transformers: {saved}")
        print(RANDOM_WARNING.format(model=args.model))
    print(f"done in {time.perf_counter() - started:.1f}s")
    return 0
