"""`make gpu-check`: prove the gpu target on a CUDA machine in one prepared run, and measure it.

1. builds random-tiny and random-base for the target in fp32 and fp16 through the project's own ``build()``
   (each artifact reloaded and verified on the device, as every build does);
2. compares with transformers on the same device, image by image over the project's test images: fp32 answers
   and scores against ``generate()``, fp16 answer-word agreement and max |delta score|;
3. measures the in-process floor for the largest model (frames/s and p50 per frame batch, 3 behavior questions,
   scores only) at frame batches 1, 4, 8 and 32, with the split over the three components and device memory;
4. if time and a ``tritonserver`` allow, serves each build through real Triton and reports served frames/s
   at several concurrencies, checking that served answers equal the in-process ones;
5. writes one JSON report and prints a table.

``--dry-run`` runs the same code on this CPU machine (cpu target, random-tiny, fp32, small counts): `make test`
runs it so the script is known to work before a GPU is lent. Every phase checks the time left (``--budget-s``)
and skips what would not fit, so a lease is never spent on a run that returns nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blip_bench.callers import frame_callers
from blip_bench.corpus import generated_images
from blip_bench.floor import floor
from blip_bench.frames import RESULTS, ROOT, SAMPLE
from blip_bench.parity import PARITY_QUESTIONS, parity, served_style_answers
from blip_bench.timing import concurrent
from blip_bench.workspace import copy_model_sources
from blip_build import build
from blip_client.client import BlipVqaClient
from blip_contract.env import env_default
from blip_contract.version import add_version_option
from blip_serving.deployment import Deployment
from blip_serving.errors import TargetUnavailableError
from blip_serving.model_config import write_repository_configs
from blip_serving.targets import resolve_target
from blip_serving.triton.process import TritonServer

DEFAULT_OUT = RESULTS / "bench-gpu.json"


class Clock:
    """Seconds left in the run; phases ask before they start."""

    def __init__(self, budget_s: float) -> None:
        self.deadline = time.monotonic() + budget_s

    def left(self) -> float:
        return self.deadline - time.monotonic()


def environment() -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "device": "cpu",
    }
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info |= {"device": properties.name, "device_memory_gib": round(properties.total_memory / 2**30, 1)}
    return info


def test_images() -> list[Path]:
    """The project's own generated test images plus the sample photo (no files from outside the clone)."""
    return [SAMPLE, *sorted((generated_images() / "valid").iterdir())]


def build_all(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Every (model, precision) build; fp16 reuses the fp32 build's saved checkpoint."""

    builds: dict[str, dict[str, Any]] = {}
    for model in args.models:
        checkpoint = model
        for precision in args.precisions:
            key = f"{model}/{precision}"
            try:
                target = resolve_target(args.target, fp16=precision == "fp16")
            except TargetUnavailableError as error:
                builds[key] = {"skipped": str(error)}
                log(f"{key}: skipped ({error})")
                continue
            root = args.workspace / model / precision
            started = time.perf_counter()
            manifest = build(
                checkpoint,
                target,
                artifacts=root / "artifacts",
                repository=copy_repository(root / "model_repository"),
                progress=lambda line, key=key: log(f"  {key}: {line}"),
            )
            checkpoint = manifest.checkpoint_location
            components = manifest.record.components
            builds[key] = {
                "manifest": manifest,
                "seconds": round(time.perf_counter() - started, 1),
                "max_relative_error": {name: c.max_relative_error for name, c in components.items()},
                "artifact_mib": round(sum(f.bytes for c in components.values() for f in c.files) / 2**20, 1),
                "repository": root / "model_repository",
            }
            log(f"{key}: built and verified in {builds[key]['seconds']}s: {builds[key]['max_relative_error']}")
    return builds


def copy_repository(repository: Path) -> Path:

    return copy_model_sources(repository)


def release_device_memory() -> None:
    """Give cached blocks back once a phase's models are gone, so the next phase's figures are its own."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def served(entry: dict[str, Any], images: list[Path], args: argparse.Namespace, log) -> dict[str, Any]:
    """Real Triton over the build, tensors between the steps on the device first (the gpu default); if that
    fails, the reason (Triton's log) is kept and the same build is served with them through host memory."""

    manifest = entry["manifest"]
    attempts: dict[str, Any] = {}
    for step_tensors in args.step_tensors:
        deployment = Deployment(host_step_tensors=step_tensors == "host")
        write_repository_configs(
            manifest.spec, manifest.target_name, entry["repository"], manifest.directory, deployment
        )
        log(f"  step tensors on {step_tensors}")
        attempts[step_tensors] = served_once(entry, images, args, log)
        if "error" not in attempts[step_tensors]:
            break
    return attempts


def served_once(entry: dict[str, Any], images: list[Path], args: argparse.Namespace, log) -> dict[str, Any]:

    server = TritonServer(entry["repository"], entry["manifest"].target_name)
    result: dict[str, Any] = {"layout": "ensemble"}
    try:
        server.start()
        with BlipVqaClient(server.grpc_url, protocol="grpc", timeout_s=300) as client:
            expected = entry.get("in_process") or served_style_answers(
                entry["manifest"], images[: args.served_images], PARITY_QUESTIONS
            )
            got = []
            for path in images[: args.served_images]:
                infer = client.infer(path.read_bytes(), PARITY_QUESTIONS)
                got += [
                    {"image": path.name, "question": q, "answer": a, "score": s}
                    for q, a, s in zip(PARITY_QUESTIONS, infer.answers or [], infer.scores, strict=True)
                ]
            pairs = list(zip(expected, got))
            result["answers_checked"] = len(pairs)
            result["answers_equal_in_process"] = sum(e["answer"] == g["answer"] for e, g in pairs)
            result["max_abs_score_delta_in_process"] = max(
                (abs(e["score"] - g["score"]) for e, g in pairs), default=None
            )
        image = SAMPLE.read_bytes()

        make_caller = frame_callers(server.grpc_url, image, protocol="grpc", timeout_s=300)

        result["levels"] = []
        for level in args.concurrency:
            run = concurrent(make_caller, concurrency=level, seconds=args.seconds)
            result["levels"].append(run.summary())
            log(f"  served c={level}: {run.fps:.2f} frames/s, p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms")
    except Exception as error:  # the report keeps what ran, the reason and Triton's own words
        result["error"] = f"{type(error).__name__}: {str(error)[:600]}"
        result["triton_log_tail"] = server.recent_log(80)
        log(f"  served failed: {result['error']}\n{result['triton_log_tail']}")
    finally:
        server.stop(grace_s=20)
    return result


def table(report: dict[str, Any]) -> str:
    lines = [f"device: {report['environment']['device']} (torch {report['environment']['torch']})", ""]
    lines.append(f"{'build':<22}{'parity':<44}{'seconds':>8}")
    for key, entry in report["builds"].items():
        check = report["parity"].get(key)
        text = (
            f"{check['answers_equal']}/{check['answers']} equal, words {check['word_agreement']:.4f}, "
            f"|ds| {check['max_abs_score_delta']:.1e}"
            if check
            else entry.get("skipped", "-")[:42]
        )
        lines.append(f"{key:<22}{text:<44}{entry.get('seconds', '-')!s:>8}")
    for key, result in report["floor"].items():
        lines.append("")
        lines.append(f"floor {key} (scores only, 3 questions): batch  frames/s  p50 ms/batch  split ms")
        for level in result["levels"]:
            lines.append(
                f"  {level['frame_batch']:>5}  {level['fps']:>9}  {level['p50_ms_per_batch']:>12}  {level['stage_ms']}"
            )
        if result["device_memory"]:
            lines.append(f"  device memory: {result['device_memory']}")
    for key, attempts in report["served"].items():
        for step_tensors, result in attempts.items():
            lines.append("")
            if "error" in result or "skipped" in result:
                lines.append(
                    f"served {key}, step tensors on {step_tensors}: {result.get('error') or result.get('skipped')}"
                )
                continue
            lines.append(
                f"served {key} ({result['layout']}, step tensors on {step_tensors}): "
                f"{result['answers_equal_in_process']}/{result['answers_checked']} answers equal in-process"
            )
            for level in result["levels"]:
                lines.append(f"  c={level['concurrency']:<3} {level['fps']:>8} frames/s  p50 {level['p50_ms']} ms")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu-check", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="cpu target, random-tiny, fp32, short: what make test runs"
    )
    parser.add_argument("--target", default=None, help="default gpu (cpu with --dry-run)")
    parser.add_argument("--models", default=None, help="default random-tiny,random-base (random-tiny with --dry-run)")
    parser.add_argument("--batches", default=None, help="frame batches of the floor (default 1,4,8,32)")
    parser.add_argument("--concurrency", default=None, help="served concurrencies (default 1,8,32)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per measured level (default 4)")
    parser.add_argument("--served-images", type=int, default=4, help="images whose served answers are checked")
    parser.add_argument("--budget-s", type=float, default=float(env_default("GPU_CHECK_BUDGET_S") or 480))
    parser.add_argument("--workspace", type=Path, default=ROOT / ".gpu-check")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON report (default {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--phases", default="parity,floor,served", help="which phases run after the builds")
    parser.add_argument(
        "--step-tensors",
        default="device,host",
        help="served: where tensors between the steps live, tried in order until one serves (device, host)",
    )
    args = add_version_option(parser).parse_args(argv)
    args.phases = set(args.phases.split(","))
    args.step_tensors = args.step_tensors.split(",")
    dry = args.dry_run
    args.target = args.target or ("cpu" if dry else "gpu")
    args.models = (args.models or ("random-tiny" if dry else "random-tiny,random-base")).split(",")
    args.precisions = ["fp32"] if dry else ["fp32", "fp16"]
    args.batches = [int(b) for b in (args.batches or ("1,2" if dry else "1,4,8,32")).split(",")]
    args.concurrency = [int(c) for c in (args.concurrency or ("1,2" if dry else "1,8,32")).split(",")]
    args.seconds = args.seconds if args.seconds is not None else (1.0 if dry else 4.0)
    args.out = args.out or (args.workspace / "bench-gpu-dry-run.json" if dry else DEFAULT_OUT)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock = Clock(args.budget_s)
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {line}", flush=True)

    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "dry_run": args.dry_run,
        "target": args.target,
        "environment": environment(),
        "builds": {},
        "parity": {},
        "floor": {},
        "served": {},
        "skipped": [],
    }
    log(f"environment: {report['environment']}")

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        serializable = {
            key: {
                k: {f: v for f, v in b.items() if f not in ("manifest", "repository", "in_process")}
                for k, b in value.items()
            }
            if key == "builds"
            else value
            for key, value in report.items()
        }
        args.out.write_text(json.dumps(serializable, indent=2, default=str) + "\n")

    images = test_images()
    builds = build_all(args, log)
    report["builds"] = builds
    save()
    if "parity" not in args.phases:
        report["skipped"].append("parity: not asked for")
    elif clock.left() > 60:
        report["parity"] = parity(builds, images, log)
        release_device_memory()
    else:
        report["skipped"].append("parity: out of time")
    save()
    largest = args.models[-1]
    for precision in args.precisions:
        entry = builds.get(f"{largest}/{precision}", {})
        if "manifest" not in entry or "floor" not in args.phases:
            continue
        if clock.left() < 45:
            report["skipped"].append(f"floor {largest}/{precision}: out of time")
            continue
        log(f"floor {largest}/{precision}")
        report["floor"][f"{largest}/{precision}"] = floor(entry["manifest"], args.batches, args.seconds, log)
        release_device_memory()
        save()
    for key, entry in builds.items():
        if "served" not in args.phases or "manifest" not in entry or not key.startswith(largest):
            continue
        if clock.left() < 60:
            report["served"][key] = {"-": {"skipped": "out of time"}}
            continue
        log(f"served {key}")
        report["served"][key] = served(entry, images, args, log)
        save()
    report["seconds"] = round(time.perf_counter() - started, 1)
    save()
    print(table(report), flush=True)
    print(f"report: {args.out}")
    failed = [key for key, check in report["parity"].items() if key.endswith("fp32") and not check["met"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
