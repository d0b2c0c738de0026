"""``make bench``'s host section: what serving one camera frame costs the host, beside the model's own work.

An accelerator finishes this model's frame in milliseconds; the host around it (decode, resize, tokenize, Python
stubs, IPC) decides how many frames it gets. So this serves ``random-host`` (random-tiny's layers at
blip-vqa-base's 384 px input: its model time is small, and what remains is the serving tax) in each layout, drives
it with gRPC callers at several concurrencies with camera JPEG frames of each size, and reports:

- frames/s;
- CPU-ms per frame of tritonserver and of each stub model (psutil over the server's process tree), and the load
  generator's own CPU separately;
- mean requests per execute of every model (Triton's statistics: inference_count / execution_count);
- in process, one torch thread: the same frame's work split per stage (decode, resize, normalize, tokenize, each
  component), at batch 1 and at the batch the server sees, which the served CPU is compared with.

Frames carry the 3 behaviour questions in scores-only mode, as the alerting path sends them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from blip_bench.bench import machine
from blip_bench.callers import frame_callers
from blip_bench.corpus import CAMERA_SIZES, camera_frame, generated_images
from blip_bench.frames import BEHAVIOR_QUESTIONS, RESULTS, write_report
from blip_bench.timing import concurrent
from blip_bench.workspace import Workspace, prepare
from blip_contract.version import add_version_option
from blip_images.decode import decode_image
from blip_serving.deployment import Deployment
from blip_serving.instance_names import model_of
from blip_serving.layouts import LAYOUT_NAMES
from blip_serving.spec import PUBLIC_MODEL
from blip_serving.stub.models import PreparedFrame, ServingOptions, load_pipeline
from blip_serving.triton.process import STUB_PROGRAM, TritonServer, stub_instance

HOST_MODEL = "random-host"
# Open questions besides the behaviour ones: their answers are longer, so agreement is tested beyond yes/no.
AGREEMENT_QUESTIONS = ("what is the animal doing?", "where is the dog?")
TRITONSERVER = "tritonserver"


def tree_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of tritonserver and of each stub model, its instances summed."""
    totals: dict[str, float] = {}
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            with process.oneshot():
                args, times = process.cmdline(), process.cpu_times()
        except psutil.Error:
            continue
        instance = stub_instance(args)
        if instance is None and args and STUB_PROGRAM in args[0]:
            continue  # a stub starting or exiting: its instance is not known yet, and its CPU is not tritonserver's
        role = TRITONSERVER if instance is None else model_of(instance)
        totals[role] = totals.get(role, 0.0) + times.user + times.system
    return totals


def execution_counts(client: Any) -> dict[str, tuple[int, int]]:
    """Model -> (inference_count, execution_count) from Triton's statistics API."""
    stats = client.get_inference_statistics(as_json=True)
    return {
        model["name"]: (int(model.get("inference_count", 0)), int(model.get("execution_count", 0)))
        for model in stats.get("model_stats", [])
    }


def requests_per_execute(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Model -> mean requests per execute between two ``execution_counts``; models that ran no execute left out."""
    per_execute = {}
    for model, (inferences, executions) in after.items():
        done = executions - before.get(model, (0, 0))[1]
        if done:
            per_execute[model] = round((inferences - before.get(model, (0, 0))[0]) / done, 2)
    return per_execute


def served_point(server: TritonServer, image: bytes, concurrency: int, seconds: float) -> dict[str, Any]:
    """One concurrency level: frames/s, CPU-ms per frame by process, requests per execute by model."""
    import tritonclient.grpc as grpc

    stats_client = grpc.InferenceServerClient(server.grpc_url)
    me = psutil.Process()
    cpu_before, counts_before, own_before = (
        tree_cpu_seconds(server.process.pid),
        execution_counts(stats_client),
        me.cpu_times(),
    )

    make_caller = frame_callers(server.grpc_url, image, protocol="grpc", timeout_s=120)
    run = concurrent(make_caller, concurrency=concurrency, seconds=seconds)
    own_after, counts_after, cpu_after = (
        me.cpu_times(),
        execution_counts(stats_client),
        tree_cpu_seconds(server.process.pid),
    )
    stats_client.close()
    # Every frame Triton served in the interval (the callers' warm-up calls too) shares the CPU measured over it.
    frames = counts_after[PUBLIC_MODEL][0] - counts_before[PUBLIC_MODEL][0]
    cpu_ms = {role: round((cpu_after[role] - cpu_before.get(role, 0.0)) * 1000 / frames, 2) for role in cpu_after}
    own = (own_after.user + own_after.system - own_before.user - own_before.system) * 1000 / frames
    return {
        **run.summary(),
        "cpu_ms_per_frame": round(sum(cpu_ms.values()), 2),
        "cpu_ms_by_process": cpu_ms,
        "load_generator_cpu_ms_per_frame": round(own, 2),
        "requests_per_execute": requests_per_execute(counts_before, counts_after),
    }


def in_process(workspace: Workspace, image: bytes, batch: int, frames: int) -> dict[str, float]:
    """CPU-ms per frame of the serving code in this process with one torch thread, per stage, at ``batch``."""

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipeline = load_pipeline(workspace.manifest)
        inputs = {
            "IMAGE": np.array([[image]], dtype=object),
            "QUESTIONS": np.array([[q.encode() for q in BEHAVIOR_QUESTIONS]], dtype=object),
        }
        stages = StageClock(pipeline)
        for _ in range(2):
            stages.frame(inputs, batch)
        stages.reset()
        for _ in range(frames):
            stages.frame(inputs, batch)
        return {stage: round(seconds * 1000 / (frames * batch), 3) for stage, seconds in stages.totals.items()}
    finally:
        torch.set_num_threads(threads)


class StageClock:
    """Runs frames through ``pipeline`` the way a stub does and adds up process CPU time per stage."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.reset()

    def reset(self) -> None:
        self.totals: dict[str, float] = {}
        self.mark = time.process_time()

    def tick(self, stage: str) -> None:
        now = time.process_time()
        self.totals[stage] = self.totals.get(stage, 0.0) + now - self.mark
        self.mark = now

    def frame(self, inputs: dict[str, Any], batch: int) -> None:
        """``batch`` copies of one frame, prepared step by step as the pipeline's ``prepare`` does, then one run."""

        pipeline, spec = self.pipeline, self.pipeline.spec
        self.mark = time.process_time()
        items = []
        for _ in range(batch):
            data = inputs["IMAGE"].reshape(-1)[0]
            image = decode_image(data, max_bytes=spec.max_image_bytes, max_pixels=spec.max_image_pixels)
            self.tick("decode")
            pixels = pipeline.image_encoder.resize(image)
            self.tick("resize")
            ids, mask = pipeline.text_encoder.prepare_questions(inputs["QUESTIONS"])
            self.tick("tokenize")
            items.append(PreparedFrame(pixels, ids, mask, scores_only=True))
        pipeline.run(items, clock=self.tick)


def resize_agreement(workspace: Workspace) -> dict[str, Any]:
    """The fast path (reduced JPEG decode, reduce before bicubic) against the exact one, in process, on the test
    and camera-frame corpora: answers (answer mode) equal, and the largest |delta score|, per image."""

    exact, fast = load_pipeline(workspace.manifest), load_pipeline(workspace.manifest, options=ServingOptions(True))
    questions = np.array([[q.encode() for q in BEHAVIOR_QUESTIONS + AGREEMENT_QUESTIONS]], dtype=object)
    per_image, equal, total, worst = {}, 0, 0, 0.0
    images = sorted((generated_images() / "valid").iterdir()) + sorted((generated_images() / "camera").iterdir())
    for path in images:
        inputs = {"IMAGE": np.array([[path.read_bytes()]], dtype=object), "QUESTIONS": questions}
        ours, theirs = (pipeline.run([pipeline.prepare(inputs, {})])[0] for pipeline in (fast, exact))
        same = [a == b for a, b in zip(ours["ANSWERS"].reshape(-1), theirs["ANSWERS"].reshape(-1))]
        delta = float((ours["SCORES"] - theirs["SCORES"]).abs().max())
        per_image[path.name] = {"answers_equal": f"{sum(same)}/{len(same)}", "max_abs_delta_score": round(delta, 6)}
        equal, total, worst = equal + sum(same), total + len(same), max(worst, delta)
    return {
        "answers_equal": f"{equal}/{total}",
        "agreement": round(equal / total, 4),
        "max_abs_delta_score": round(worst, 6),
        "images": per_image,
    }


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = [tuple(int(n) for n in part.split("x")) for part in text.split(",") if part]
    unknown = [s for s in sizes if s not in CAMERA_SIZES]
    if unknown:
        raise argparse.ArgumentTypeError(f"no camera frame of size {unknown}; the corpus has {list(CAMERA_SIZES)}")
    return sizes  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="blip-bench-host", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default=HOST_MODEL)
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--fp16", action="store_true", help="half-precision build (gpu)")
    parser.add_argument(
        "--host-step-tensors", action="store_true", help="tensors between steps through host memory (gpu hosts)"
    )
    parser.add_argument("--layouts", type=lambda t: t.split(","), default=list(LAYOUT_NAMES))
    parser.add_argument("--sizes", type=parse_sizes, default=[(640, 360), (1920, 1080)])
    parser.add_argument("--concurrency", type=lambda t: [int(c) for c in t.split(",")], default=[1, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=10.0, help="window per point")
    parser.add_argument("--in-process-frames", type=int, default=20)
    parser.add_argument(
        "--fast-concurrency",
        type=lambda t: [int(c) for c in t.split(",") if c],
        default=[8],
        help="concurrencies also served with fast resize (empty: none)",
    )
    parser.add_argument(
        "--intra-op-threads", type=int, default=0, help="torch threads per stub (default 0: the cores / instances)"
    )
    parser.add_argument(
        "--queue-delay-us", type=int, default=None, help="steps' queue delay (default: the deployment's)"
    )
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default benchmarks/results/host-<target>.json)"
    )
    args = add_version_option(parser).parse_args(argv)
    root = {"root": args.workspace} if args.workspace else {}
    workspace = prepare(args.model, args.target, fp16=args.fp16, **root)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores; model {args.model} on {args.target}", flush=True)
    report: dict[str, Any] = {
        "machine": info,
        "model": args.model,
        "target": args.target,
        "precision": "fp16" if args.fp16 else "fp32",
        "questions": list(BEHAVIOR_QUESTIONS),
        "mode": "scores_only",
        "protocol": "grpc",
        "seconds_per_point": args.seconds,
        "in_process": {},
        "served": {},
        "served_fast_resize": {},
    }
    if args.fast_concurrency:
        report["fast_resize_agreement"] = resize_agreement(workspace)
        agreement = report["fast_resize_agreement"]
        print(
            f"fast resize against exact: answers {agreement['answers_equal']}, max |delta score| "
            f"{agreement['max_abs_delta_score']}",
            flush=True,
        )
    for width, height in args.sizes:
        name, image = f"{width}x{height}", camera_frame(width, height)
        report["in_process"][name] = {
            f"batch{batch}": in_process(workspace, image, batch, max(2, args.in_process_frames // batch))
            for batch in sorted({1, 8})
        }
        print(f"in process {name}: {report['in_process'][name]}", flush=True)
    variants = [("served", False, args.concurrency)]
    if args.fast_concurrency:
        variants.append(("served_fast_resize", True, args.fast_concurrency))
    for layout in args.layouts:
        for key, fast, levels in variants:
            delay = {} if args.queue_delay_us is None else {"step_queue_delay_us": args.queue_delay_us}
            deployment = Deployment(
                layout=layout,
                intra_op_threads=args.intra_op_threads,
                fast_resize=fast,
                host_step_tensors=args.host_step_tensors,
                **delay,
            )
            workspace.deploy(deployment)
            report[key][layout] = {}
            with TritonServer(workspace.repository, workspace.target, layout=layout) as server:
                for width, height in args.sizes:
                    name, image = f"{width}x{height}", camera_frame(width, height)
                    points = []
                    for level in levels:
                        point = served_point(server, image, level, args.seconds)
                        points.append(point)
                        print(
                            f"{layout}{' fast resize' if fast else ''} {name} c={level}: {point['fps']:.1f} frames/s, "
                            f"{point['cpu_ms_per_frame']:.1f} CPU-ms/frame {point['cpu_ms_by_process']}, per execute "
                            f"{point['requests_per_execute']}, load generator "
                            f"{point['load_generator_cpu_ms_per_frame']:.1f} ms",
                            flush=True,
                        )
                    report[key][layout][name] = points
    write_report(report, args.out or RESULTS / f"host-{args.target}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
