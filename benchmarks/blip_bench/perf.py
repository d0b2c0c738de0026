"""``make perf``: perf_analyzer against ``blip_vqa``, sweeping layout x server instances x client concurrency.

Each point is one perf_analyzer run (tritonclient 2.50's binary) on a real frame and its questions, sent as BYTES
with their 4-byte length prefixes in the input JSON. It writes a CSV and a chart (latency bars and throughput by
"layout instances-concurrency", as the seeds' "#server threads - #client threads" figure) and prints the knee: the
highest throughput whose p99 stays under ``SLO_MS``, and how many instances (or machines) a rate ``RATE`` needs.

Two ways to run it. ``make perf`` builds ``MODEL`` into a workspace and sweeps servers of its own (layouts x
instances). ``make perf URL=host:port`` (and the perf Job, ``deploy/kubernetes/base/perf``) measures a deployed fleet
as it runs: its model, layout and instances are read from its Triton (``blip_bench.deployed``), nothing is built and
no server is started; only the concurrency is swept. Both record the host type (``blip_bench.host_type``), which is
what ``make capacity`` matches an overlay against.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from blip_bench.bench import machine
from blip_bench.corpus import CAMERA_SIZES, camera_frame
from blip_bench.deployed import GRPC_PORT, FleetUnreadable, describe
from blip_bench.frames import BEHAVIOR_QUESTIONS, RESULTS, SAMPLE
from blip_bench.host_type import host_type
from blip_bench.perf_analyzer import input_data, library_directory, run_point
from blip_bench.workspace import Workspace, prepare
from blip_client.client import BlipVqaClient
from blip_contract.env import env_default
from blip_contract.version import add_version_option
from blip_serving.deployment import Deployment
from blip_serving.layouts import LAYOUT_NAMES
from blip_serving.perf_summary import Machine, PerfPoint, PerfSummary
from blip_serving.spec import PUBLIC_MODEL
from blip_serving.triton.process import TritonServer

Point = PerfPoint


def perf_frames() -> dict[str, bytes]:
    """What the sweep sends, in turn: the PNG sample and a camera JPEG frame of each size."""
    frames = {SAMPLE.name: SAMPLE.read_bytes()}
    frames.update({f"frame_{w}x{h}.jpg": camera_frame(w, h) for w, h in CAMERA_SIZES})
    return frames


def prepare_inputs(work: Path) -> tuple[Path, dict[str, str]]:
    """perf_analyzer's input JSON (every frame, the behaviours' questions) and its environment (its libraries)."""
    work.mkdir(parents=True, exist_ok=True)
    data_path = work / "input.json"
    data_path.write_text(json.dumps(input_data(list(perf_frames().values()), BEHAVIOR_QUESTIONS)))
    env = dict(os.environ)
    libraries = library_directory(work)
    if libraries is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libraries), env.get("LD_LIBRARY_PATH")]))
    return data_path, env


def measure(
    http_url: str,
    grpc_url: str,
    layout: str,
    instances: int,
    args: argparse.Namespace,
    work: Path,
    first: int = 1,
    total: int | None = None,
) -> list[Point]:
    """One fleet, every concurrency: its first calls warmed (each instance's), then one perf_analyzer run each;
    progress lines count points from ``first`` of ``total``."""
    total = total or len(args.concurrency)
    data_path, env = prepare_inputs(work)
    image = SAMPLE.read_bytes()
    with BlipVqaClient(http_url, timeout_s=600) as client:
        for _ in range(2 * instances):
            client.infer(image, BEHAVIOR_QUESTIONS, scores_only=args.scores_only)
    points = []
    for index, concurrency in enumerate(args.concurrency, first):
        started = time.perf_counter()
        figures = run_point(grpc_url, data_path, concurrency, args, env, work)
        points.append(Point(instances=instances, concurrency=concurrency, **figures, layout=layout))
        print(
            f"[{index}/{total}] {layout}, instances {instances}, concurrency {concurrency}: "
            f"{figures['throughput']:.3f} frames/s, p50 {figures['p50_ms']:.0f} ms, "
            f"p99 {figures['p99_ms']:.0f} ms ({time.perf_counter() - started:.0f} s)"
            + ("" if figures["stable"] else f"; UNSTABLE: windows disagreed by over {args.stability}%"),
            flush=True,
        )
    return points


def sweep(workspace: Workspace, args: argparse.Namespace) -> list[Point]:
    """Every layout x instances the flags name, each on a server of the sweep's own over the workspace's build."""
    work = workspace.repository.parent / "perf"
    shapes = [(layout, instances) for layout in args.layouts for instances in args.instances]
    points: list[Point] = []
    total = len(shapes) * len(args.concurrency)
    for layout, instances in shapes:
        workspace.deploy(Deployment(layout=layout, instances=instances))
        with TritonServer(workspace.repository, workspace.target, layout=layout) as server:
            first = len(points) + 1
            points += measure(server.http_url, server.grpc_url, layout, instances, args, work, first, total)
    return points


def knee(points: list[Point], slo_ms: float) -> Point | None:
    """The highest throughput whose p99 stays under the SLO, from stable points while there are any."""
    points = [p for p in points if p.stable] or points
    within = [p for p in points if p.p99_ms <= slo_ms]
    return max(within, key=lambda p: p.throughput) if within else None


def capacity_for_rate(points: list[Point], slo_ms: float, rate: float) -> dict:
    """The fewest instances that carry ``rate`` within the SLO on one machine, else machines at the knee."""
    best = knee(points, slo_ms)
    if best is None:
        return {"rate": rate, "answer": f"no point keeps p99 under {slo_ms:g} ms"}
    for instances, layout in sorted({(p.instances, p.layout) for p in points}):
        top = knee([p for p in points if (p.instances, p.layout) == (instances, layout)], slo_ms)
        if top is not None and top.throughput >= rate:
            return {
                "rate": rate,
                "layout": layout,
                "instances": instances,
                "machines": 1,
                "concurrency": top.concurrency,
            }
    machines = math.ceil(rate / best.throughput)
    return {
        "rate": rate,
        "layout": best.layout,
        "instances": best.instances,
        "machines": machines,
        "concurrency": best.concurrency,
    }


def write_csv(points: list[Point], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(PerfPoint.model_fields))
        writer.writeheader()
        writer.writerows(p.model_dump() for p in points)


def chart(points: list[Point], path: Path, slo_ms: float, title: str) -> bool:
    """The chart, where matplotlib is installed (the dev extras; a fleet image's perf Job has none): whether one
    was written."""
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{p.layout[0].upper()}{p.instances}-{p.concurrency}{'' if p.stable else '*'}" for p in points]
    x = range(len(points))
    figure, latency_axis = plt.subplots(figsize=(max(6, 1.1 * len(points)), 4.5))
    width = 0.4
    latency_axis.bar([i - width / 2 for i in x], [p.p50_ms for p in points], width, label="p50 latency")
    latency_axis.bar([i + width / 2 for i in x], [p.p99_ms for p in points], width, label="p99 latency")
    latency_axis.axhline(slo_ms, color="red", linestyle="--", linewidth=1, label=f"SLO {slo_ms:g} ms")
    latency_axis.set_xticks(list(x), labels)
    latency_axis.set_xlabel(
        "layout (E ensemble, C colocated) #server instances - #client concurrency"
        + ("" if all(p.stable for p in points) else " (* unstable)")
    )
    latency_axis.set_ylabel("latency (ms)")
    throughput_axis = latency_axis.twinx()
    throughput_axis.plot(list(x), [p.throughput for p in points], "ko-", label="throughput")
    throughput_axis.set_ylabel("frames / s")
    throughput_axis.set_ylim(bottom=0)
    handles = latency_axis.get_legend_handles_labels()[0] + throughput_axis.get_legend_handles_labels()[0]
    latency_axis.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
    latency_axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="blip-perf", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default=env_default("MODEL") or "random-base")
    parser.add_argument("--target", default=env_default("TARGET") or "cpu")
    parser.add_argument(
        "--url",
        default=None,
        help="a deployed fleet's HTTP host:port: measure it as it runs (its own model, layout and instances, read "
        "from its Triton); nothing is built and no server is started, so --model, --target, --layouts, "
        "--instances and --workspace do not apply",
    )
    parser.add_argument("--grpc-url", default=None, help=f"with --url: its gRPC host:port (default: port {GRPC_PORT})")
    parser.add_argument(
        "--host-type",
        default=None,
        help="the measured host's type (inf2.xlarge, g5.xlarge, ...); default: EC2 instance metadata, else local "
        "(not BLIP_HOST_TYPE, which the Makefile always sets for make plan)",
    )
    parser.add_argument(
        "--layouts",
        type=lambda text: [part for part in text.split(",") if part],
        default=[part for part in (env_default("PERF_LAYOUTS") or ",".join(LAYOUT_NAMES)).split(",") if part],
    )
    parser.add_argument("--instances", type=_sizes, default=_sizes(env_default("PERF_INSTANCES") or "1,2"))
    parser.add_argument("--concurrency", type=_sizes, default=_sizes(env_default("PERF_CONCURRENCY") or "1,2,4"))
    parser.add_argument("--slo-ms", type=float, default=float(env_default("SLO_MS") or 2000))
    parser.add_argument("--rate", type=float, default=float(env_default("RATE") or 2), help="frames per second")
    parser.add_argument("--answers", dest="scores_only", action="store_false", help="answer mode, not scores only")
    parser.add_argument("--requests-per-window", type=int, default=8)
    parser.add_argument("--stability", type=int, default=50, help="perf_analyzer --stability-percentage")
    parser.add_argument("--max-trials", type=int, default=6)
    parser.add_argument("--point-timeout-s", type=float, default=300)
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for perf-<target>.csv/.png/.json")
    parser.add_argument(
        "--print-summary",
        action="store_true",
        help="end with the summary as one JSON line (a perf Job's: kubectl logs job/... | tail -n 1 > perf.json)",
    )
    args = add_version_option(parser).parse_args(argv)
    started = time.perf_counter()
    host = host_type(args.host_type)
    info = machine()
    mode = "scores only" if args.scores_only else "answers"
    if args.url:
        try:
            fleet = describe(args.url, args.grpc_url)
        except FleetUnreadable as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        model, target = f"deployed {PUBLIC_MODEL} ({fleet.artifact_dir})", fleet.target
        print(
            f"perf: the fleet at {fleet.url} as deployed ({fleet.target} target, {fleet.layout} layout, "
            f"{fleet.instances} instance(s)) on {host.name} ({host.source}); concurrency {args.concurrency}; "
            f"{len(BEHAVIOR_QUESTIONS)} questions per frame, {mode}",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="blip-perf-") as work:
            points = measure(fleet.url, fleet.grpc_url, fleet.layout, fleet.instances, args, Path(work))
    else:
        workspace = prepare(args.model, args.target, **({"root": args.workspace} if args.workspace else {}))
        model, target = args.model, args.target
        print(
            f"perf: {args.model} on {args.target}, {info['cpu']} ({info['cores']} cores, {host.name}); layouts "
            f"{args.layouts} x instances {args.instances} x concurrency {args.concurrency}; "
            f"{len(BEHAVIOR_QUESTIONS)} questions per frame, {mode}",
            flush=True,
        )
        points = sweep(workspace, args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"perf-{target}"
    write_csv(points, stem.with_suffix(".csv"))
    title = f"blip_vqa {model} on {target}, {host.name}: {info['cpu']}, {info['cores']} cores ({mode})"
    charted = chart(points, stem.with_suffix(".png"), args.slo_ms, title)
    best = knee(points, args.slo_ms)
    capacity = capacity_for_rate(points, args.slo_ms, args.rate)
    summary = PerfSummary(
        machine=Machine(**info),
        model=model,
        target=target,
        mode=mode,
        questions_per_frame=len(BEHAVIOR_QUESTIONS),
        frames=list(perf_frames()),
        slo_ms=args.slo_ms,
        knee=best,
        capacity=capacity,
        points=points,
        seconds=round(time.perf_counter() - started, 1),
        host_type=host.name,
        host_type_source=host.source,
        fleet_url=args.url,
    )
    summary.write(stem.with_suffix(".json"))
    if best:
        print(
            f"knee (p99 <= {args.slo_ms:g} ms): {best.throughput:.3f} frames/s, {best.layout} layout, "
            f"{best.instances} instance(s), "
            f"concurrency {best.concurrency} (p99 {best.p99_ms:.0f} ms)"
        )
    else:
        print(f"knee: no point keeps p99 under {args.slo_ms:g} ms")
    if "machines" in capacity:
        print(
            f"rate {args.rate:g} frames/s: {capacity['machines']} machine(s) like this one with "
            f"{capacity['instances']} {capacity['layout']} instance(s) each"
        )
    written = ", ".join(f"{stem}{suffix}" for suffix in (".csv", ".png" if charted else "", ".json") if suffix)
    print(f"wrote {written} in {summary.seconds:.0f} s" + ("" if charted else " (no chart: matplotlib is absent)"))
    if args.print_summary:
        print(summary.model_dump_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
