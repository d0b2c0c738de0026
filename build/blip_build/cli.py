"""Command line of the artifact build: ``python -m blip_build --target cpu --model random-tiny``.

It parses arguments and prints; ``blip_build.build`` does the work.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from blip_build.pipeline import build, is_random
from blip_contract.env import env_default, env_flag
from blip_contract.logs import configure_logging
from blip_contract.version import add_version_option
from blip_serving.deployment import Deployment
from blip_serving.errors import ArtifactError, TargetUnavailableError
from blip_serving.layouts import DEFAULT_LAYOUT, LAYOUT_NAMES, LAYOUTS
from blip_serving.placement import plan_path, read_plan
from blip_serving.spec import (
    DEFAULT_IMAGE_BATCH_BUCKETS,
    DEFAULT_MAX_QUESTIONS,
    DEFAULT_QUESTION_BATCH_BUCKETS,
    DEFAULT_QUESTION_BUCKETS,
)
from blip_serving.targets import TARGET_NAMES, resolve_target
from blip_serving.versions import DEFAULT_KEEP, MIN_KEEP

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
        default=_sizes(env_default(env) or ",".join(map(str, default))),
        help=f"{what} (env {env}, default {','.join(map(str, default))})",
    )


def _int_env(name: str) -> int | None:
    """An integer option's default from the environment; None (the plan's, else the built-in) when unset."""
    value = env_default(name)
    return int(value) if value else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="blip-build", description=__doc__)
    parser.add_argument("--target", choices=TARGET_NAMES, default=env_default("TARGET", "cpu"))
    parser.add_argument(
        "--model",
        default=env_default("MODEL", "random-tiny"),
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
        default=env_flag("STATIC_SHAPES"),
        help="one artifact per shape bucket, as neuron always builds (cpu/gpu trace once otherwise)",
    )
    parser.add_argument("--max-questions", type=int, default=DEFAULT_MAX_QUESTIONS, help="questions per request")
    parser.add_argument("--fp16", action="store_true", default=env_flag("FP16"), help="gpu only")
    parser.add_argument(
        "--compiler-args",
        default=env_default("NEURON_COMPILER_ARGS") or None,
        help="neuronx-cc arguments for TARGET=neuron (default: --auto-cast matmult --auto-cast-type fp16)",
    )
    parser.add_argument("--force", action="store_true", default=env_flag("FORCE"))
    parser.add_argument(
        "--keep-versions",
        type=int,
        default=int(env_default("KEEP_VERSIONS") or DEFAULT_KEEP),
        help=f"model versions of the target to keep (the newest; at least {MIN_KEEP}); older ones are removed",
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUT_NAMES,
        default=env_default("LAYOUT") or None,
        help="the layout whose deployment the options below describe (configs are written for every layout); "
        f"default: the plan's, else {DEFAULT_LAYOUT}",
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=_int_env("INSTANCES"),
        help="Triton instances of each component model (config only; no rebuild)",
    )
    parser.add_argument(
        "--neuron-cores-per-instance",
        type=int,
        default=_int_env("NEURON_CORES_PER_INSTANCE"),
        help="NeuronCores each neuron instance reserves (NEURON_RT_VISIBLE_CORES)",
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=_int_env("INTRA_OP_THREADS"),
        help="torch threads per instance; 0 shares the cores evenly among a component's instances",
    )
    parser.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=_int_env("MAX_QUEUE_DELAY_US"),
        help="how long a model callers feed (image encoder, colocated blip_vqa) may wait to fill a batch",
    )
    parser.add_argument(
        "--fast-resize",
        action="store_true",
        default=env_flag("FAST_RESIZE"),
        help="JPEGs decode at a reduced scale and resize reduces first: less host CPU, pixels not the processor's",
    )
    parser.add_argument(
        "--step-queue-delay-us",
        type=int,
        default=_int_env("STEP_QUEUE_DELAY_US"),
        help="how long a step another step feeds (the ensemble's text encoder and decoder) may wait to fill a batch",
    )
    return add_version_option(parser).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        # Resolve the target first: a missing SDK or GPU stops the build before anything is loaded or written.
        target = resolve_target(
            args.target, fp16=args.fp16, compiler_args=args.compiler_args, static_shapes=args.static_shapes
        )
        # `make plan` wrote the host's deployment for this target; options given here override it.
        plan = read_plan(args.artifacts, target.name)
        deployment = plan.deployment if plan else Deployment()
        given = {
            "layout": args.layout,
            "instances": args.instances,
            "neuron_cores_per_instance": args.neuron_cores_per_instance,
            "intra_op_threads": args.intra_op_threads,
            "max_queue_delay_us": args.max_queue_delay_us,
            "step_queue_delay_us": args.step_queue_delay_us,
            "fast_resize": args.fast_resize or None,
        }
        given = {key: value for key, value in given.items() if value is not None}
        if "layout" in given or "instances" in given:
            given.setdefault("model_instances", ())
        deployment = deployment.replaced(**given)
        if plan:
            print(f"using {plan_path(args.artifacts, target.name)} (HOST_TYPE={plan.host}): {plan.why}")
    except (TargetUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.keep_versions < MIN_KEEP:
        print(f"error: --keep-versions must be at least {MIN_KEEP}, got {args.keep_versions}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        manifest = build(
            args.model,
            target,
            artifacts=args.artifacts,
            repository=args.repository,
            question_buckets=args.question_buckets,
            image_batch_buckets=args.image_batch_buckets,
            question_batch_buckets=args.question_batch_buckets,
            max_questions=args.max_questions,
            deployment=deployment,
            force=args.force,
            keep_versions=args.keep_versions,
            progress=lambda line: print(line, flush=True),
        )
    except (ArtifactError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    names = ", ".join(f"{layout.config_name(target.name)}.pbtxt" for layout in LAYOUTS.values())
    print(
        f"wrote version {manifest.directory.name}: {manifest.directory / 'manifest.json'} and every layout's configs ({args.repository}/*/configs/: {names})"
    )
    note = target.deployment_note(deployment)
    if note:
        print(note)
    if is_random(args.model):
        print(f"saved checkpoint for comparison with transformers: {manifest.checkpoint_location}")
        print(RANDOM_WARNING.format(model=args.model))
    print(f"done in {time.perf_counter() - started:.1f}s")
    return 0
