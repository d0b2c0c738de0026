"""``make bench``: one run on one machine, the served path against the compute floor and naive transformers.

- floor: the same artifacts and serving code (``blip_serving.stub.models``) called in one process, no server;
- served: ``blip_vqa`` through tritonclient at concurrency 1 and at the best of a few concurrencies;
- naive: ``BlipForQuestionAnswering.generate`` per question, eager, ``max_new_tokens=2``;
- limit: this machine's fp32 matmul rate, and the floor's share of it (multiply-adds counted from the shapes);
- decode: the answer loop with a fixed full-length buffer against growing ones;
- memory: resident memory of the server and its stubs against the fp32 weights;
- neighbour: the server's CPU while idle, and its frame time beside one busy core (``blip_bench.contention``).

Frames carry 3 behavior questions and run in scores-only mode (one decoder step) unless ``--answers``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from blip_bench.callers import frame_callers
from blip_bench.contention import busy_core, idle_cpu_percent
from blip_bench.frame_costs import decode_strategies, floor_frame, fp32_weight_bytes, macs_per_frame, naive_frame
from blip_bench.frames import BEHAVIOR_QUESTIONS, RESULTS, SAMPLE
from blip_bench.machine import machine, matmul_gflops
from blip_bench.memory import tree_memory
from blip_bench.timing import Run, concurrent, sequential
from blip_bench.workspace import Workspace, prepare
from blip_contract.env import env_default, env_flag
from blip_contract.version import add_version_option
from blip_serving.deployment import Deployment
from blip_serving.layouts import LAYOUT_NAMES, get_layout
from blip_serving.triton.environment import OPENMP_WAIT, openmp_wait
from blip_serving.triton.process import TritonServer


def served(
    workspace: Workspace,
    image: bytes,
    questions: tuple[str, ...],
    scores_only: bool,
    args,
    layout: str,
    omp_wait_policy: str | None = None,
) -> dict:
    """``blip_vqa`` through tritonclient at each concurrency; then the server tree's memory, its CPU while idle,
    and sequential frames beside a busy core. ``omp_wait_policy``: that policy alone instead of the server's
    OpenMP wait settings."""
    workspace.deploy(Deployment(layout=layout, instances=args.instances))
    runs: list[Run] = []
    env = {name: value for name, value in os.environ.items() if name not in OPENMP_WAIT}
    if omp_wait_policy:  # the server hands a caller's own setting, alone, to the stubs
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    else:
        env.update({name: os.environ[name] for name in OPENMP_WAIT if name in os.environ})
    settings = openmp_wait(env)
    policy = " ".join(f"{name}={value}" for name, value in settings.items())
    with TritonServer(workspace.repository, workspace.target, layout=layout, env=env) as server:
        make_caller = frame_callers(server.http_url, image, questions, scores_only=scores_only)

        for level in args.concurrency:
            run = concurrent(make_caller, concurrency=level, seconds=args.seconds)
            runs.append(run)
            print(
                f"  {layout} ({policy}) c={level}: {run.fps:.3f} frames/s, p50 {run.p50_ms:.0f} ms, "
                f"p99 {run.p99_ms:.0f} ms",
                flush=True,
            )
        memory = tree_memory(server.process.pid)
        idle = idle_cpu_percent(server.process.pid)
        with make_caller() as call, busy_core():
            beside = sequential(call, frames=args.neighbour_frames, warmup=0)
        print(
            f"  {layout} ({policy}): idle {idle:.0f}% of a core; c=1 beside a busy core: p50 {beside.p50_ms:.0f} ms",
            flush=True,
        )
    return {"runs": runs, "memory": memory, "openmp_wait": settings, "idle_cpu_percent": idle, "beside": beside}


def layout_report(serving: dict, floor: Run, naive: Run, weights: int) -> dict:
    runs: list[Run] = serving["runs"]
    c1, best = runs[0], max(runs, key=lambda r: r.fps)
    memory = serving["memory"]
    rss, pss = sum(m.rss_bytes for m in memory), sum(m.pss_bytes for m in memory)
    return {
        "openmp_wait": serving["openmp_wait"],
        "idle_cpu_percent": round(serving["idle_cpu_percent"], 1),
        "beside_busy_core": serving["beside"].summary(),
        "served_c1": c1.summary(),
        "served_best": best.summary(),
        "served_levels": [r.summary() for r in runs],
        "memory": {
            "fp32_weights_mib": round(weights / 2**20, 1),
            "rss_mib": round(rss / 2**20, 1),
            "pss_mib": round(pss / 2**20, 1),
            "processes": [
                {"name": m.name, "rss_mib": round(m.rss_bytes / 2**20, 1), "pss_mib": round(m.pss_bytes / 2**20, 1)}
                for m in memory
            ],
        },
        "ratios": {
            "served_best_fps_over_floor": round(best.fps / floor.fps, 3),
            "served_best_fps_over_naive": round(best.fps / naive.fps, 3),
            "served_c1_p50_over_floor_p50": round(c1.p50_ms / floor.p50_ms, 3),
            "served_c1_p99_over_floor_p99": round(c1.p99_ms / floor.p99_ms, 3),
            "naive_p50_over_served_c1_p50": round(naive.p50_ms / c1.p50_ms, 3),
            "rss_over_fp32_weights": round(rss / weights, 3),
            "pss_over_fp32_weights": round(pss / weights, 3),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="blip-bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default=env_default("MODEL") or "random-base")
    parser.add_argument("--target", default=env_default("TARGET") or "cpu")
    parser.add_argument("--frames", type=int, default=int(env_default("BENCH_FRAMES") or 12), help="floor frames")
    parser.add_argument("--naive-frames", type=int, default=int(env_default("NAIVE_FRAMES") or 4))
    parser.add_argument("--seconds", type=float, default=float(env_default("BENCH_SECONDS") or 20), help="per level")
    parser.add_argument("--concurrency", type=lambda t: [int(c) for c in t.split(",")], default=[1, 2, 3, 4])
    parser.add_argument("--instances", type=int, default=int(env_default("INSTANCES") or 1))
    parser.add_argument("--answers", action="store_true", help="answer mode instead of scores only")
    parser.add_argument(
        "--layouts",
        type=lambda t: t.split(","),
        default=(env_default("BENCH_LAYOUTS") or ",".join(LAYOUT_NAMES)).split(","),
        help="layouts to serve, side by side",
    )
    parser.add_argument(
        "--omp-variants",
        type=lambda t: [v for v in t.split(",") if v],
        default=(env_default("BENCH_OMP_VARIANTS") or "ACTIVE,PASSIVE").split(","),
        help="OMP_WAIT_POLICY values also measured alone (no GOMP_SPINCOUNT) for the colocated layout",
    )
    parser.add_argument(
        "--neighbour-frames",
        type=int,
        default=int(env_default("NEIGHBOUR_FRAMES") or 4),
        help="sequential frames beside one busy core, per served layout and variant",
    )
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default benchmarks/results/bench-<target>.json)"
    )
    args = add_version_option(parser).parse_args(argv)
    if args.concurrency[0] != 1:
        args.concurrency.insert(0, 1)
    warnings.filterwarnings("ignore")
    fp16 = env_flag("FP16")
    workspace = prepare(args.model, args.target, **({"root": args.workspace} if args.workspace else {}), fp16=fp16)
    image, questions, scores_only = SAMPLE.read_bytes(), BEHAVIOR_QUESTIONS, not args.answers
    mode = "scores only (one decoder step)" if scores_only else "answers (greedy loop)"
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; torch {info['torch']}")
    print(f"model: {args.model} on {args.target}; frame: {SAMPLE.name} with {len(questions)} questions; {mode}")

    print("limit: fp32 matmul rate ...", flush=True)
    gflops = matmul_gflops()
    macs = macs_per_frame(workspace, questions, scores_only)
    frame_macs = sum(v for v in macs.values() if isinstance(v, float))

    print("floor: the artifacts in this process ...", flush=True)
    frame, models = floor_frame(workspace, image, questions, scores_only)
    floor = sequential(frame, frames=args.frames)
    decode = decode_strategies(models, image, questions, repeats=3)
    del models, frame

    print("served: blip_vqa through tritonclient, each layout ...", flush=True)
    servings = {layout: served(workspace, image, questions, scores_only, args, layout) for layout in args.layouts}
    variants: dict[str, dict] = {}
    for layout in args.layouts:
        if len(get_layout(layout).python_models) != 1:
            continue  # several processes share the cores: spinning OpenMP teams fight each other, no variant
        for policy in args.omp_variants:
            if servings[layout]["openmp_wait"] != {"OMP_WAIT_POLICY": policy}:
                variants[f"{layout} OMP {policy}"] = served(
                    workspace, image, questions, scores_only, args, layout, omp_wait_policy=policy
                )

    print("naive: generate per question ...", flush=True)
    naive_call, naive_model = naive_frame(workspace, image, questions)
    naive = sequential(naive_call, frames=args.naive_frames, warmup=1)
    del naive_model
    weights = fp32_weight_bytes(workspace)

    layouts = {layout: layout_report(serving, floor, naive, weights) for layout, serving in servings.items()}
    omp = {
        name: {key: value for key, value in layout_report(serving, floor, naive, weights).items() if key != "memory"}
        for name, serving in variants.items()
    }
    first = layouts[args.layouts[0]]
    achieved = frame_macs * 2 * floor.fps / 1e9
    report = {
        "machine": info,
        "model": args.model,
        "target": args.target,
        "mode": "scores_only" if scores_only else "answers",
        "questions": list(questions),
        "instances": args.instances,
        "limit": {
            "matmul_gflops": round(gflops, 1),
            "macs_per_frame": {k: (round(v / 1e9, 3) if isinstance(v, float) else v) for k, v in macs.items()},
            "gmacs_per_frame": round(frame_macs / 1e9, 3),
            "floor_gflops": round(achieved, 1),
            "floor_fraction_of_matmul": round(achieved / gflops, 3),
        },
        "floor": floor.summary(),
        "naive": naive.summary(),
        "decode_ms": decode,
        # The first layout's figures at the top level (the ensemble by default), every layout under "layouts".
        "layout": args.layouts[0],
        **{key: first[key] for key in ("served_c1", "served_best", "served_levels", "memory", "ratios")},
        "layouts": layouts,
        "omp_variants": omp,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print_table(report)
    out = args.out or RESULTS / f"bench-{args.target}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def print_table(report: dict) -> None:
    rows = [("floor (in process)", report["floor"])]
    for layout, result in report["layouts"].items():
        rows.append((f"{layout} c=1", result["served_c1"]))
        rows.append((f"{layout} best (c={result['served_best']['concurrency']})", result["served_best"]))
    for name, result in report.get("omp_variants", {}).items():
        rows.append((f"{name} best (c={result['served_best']['concurrency']})", result["served_best"]))
    rows.append(("naive generate", report["naive"]))
    print()
    print(f"{'path':<36}{'frames/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for label, row in rows:
        print(f"{label:<36}{row['fps']:>10.3f}{row['p50_ms']:>10.0f}{row['p99_ms']:>10.0f}")
    print(f"\n{'OpenMP wait policy':<36}{'idle CPU %':>12}{'c=1 p50 ms':>12}{'beside busy core':>18}")
    served_results = {**report["layouts"], **report.get("omp_variants", {})}
    for name, result in served_results.items():
        label = f"{name} (served)" if name in report["layouts"] else name
        print(
            f"{label:<36}{result['idle_cpu_percent']:>12.0f}{result['served_c1']['p50_ms']:>12.0f}"
            f"{result['beside_busy_core']['p50_ms']:>18.0f}"
        )
    limit = report["limit"]
    print(
        f"\nlimit: matmul {limit['matmul_gflops']} GFLOP/s; frame {limit['gmacs_per_frame']} GMAC; floor runs at "
        f"{limit['floor_gflops']} GFLOP/s = {limit['floor_fraction_of_matmul']:.0%} of matmul"
    )
    print(f"decode loop p50 ms by buffer policy: {report['decode_ms']}")
    print(f"\n{'target':<44}{'measured':>10}  goal")
    for layout, result in report["layouts"].items():
        memory, ratios = result["memory"], result["ratios"]
        print(
            f"{layout}: server + stubs RSS {memory['rss_mib']} MiB, PSS {memory['pss_mib']} MiB; fp32 weights "
            f"{memory['fp32_weights_mib']} MiB; {result['openmp_wait']}"
        )
        targets = (
            ("served best fps / floor fps", ratios["served_best_fps_over_floor"], ">= 0.95"),
            ("served best fps / naive fps", ratios["served_best_fps_over_naive"], ">= 2"),
            ("served c=1 p50 / floor p50", ratios["served_c1_p50_over_floor_p50"], "<= 1.05"),
            ("server RSS / fp32 weights", ratios["rss_over_fp32_weights"], "<= 1.3"),
            ("server PSS / fp32 weights", ratios["pss_over_fp32_weights"], "<= 1.3"),
        )
        for label, value, goal in targets:
            bound = float(goal.split()[1])
            met = value >= bound if goal.startswith(">=") else value <= bound
            print(f"  {layout}: {label:<34}{value:>10.3f}  {goal}  {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
