"""``make bench-pixels``: what a frame costs each tier, sent encoded (the fleet decodes) or as pixels (the API tier
decodes, checks and resizes), in one run on one machine.

It serves ``random-host`` (random-tiny's layers at blip-vqa-base's 384 px input, so the model's own compute is
small and the host work around it shows) in the colocated layout, puts the real API tier (``python -m blip_api``,
its own process) in front of it, and drives ``/v1/frames`` with camera JPEGs at 1920x1080 and 640x360 from
``--concurrency`` callers, asking the three behaviour questions (scores only). Per form and size it reports:

- frames/s; CPU-ms per frame of the fleet (tritonserver and its stubs, psutil over the tree) and of the API tier;
- requests per execute (Triton's statistics);
- the fleet's host-only CPU per frame (the fleet's CPU less the model's own compute, measured in process at one
  torch thread: on Inferentia that compute runs on the NeuronCores) and the frames/s an inf2.xlarge's 4 vCPUs
  could feed at that cost, beside the chip's estimate (issue 30: about 450 frames/s);
- bytes per frame on the wire to the fleet, and what the API tier would send an inf2.xlarge at that ceiling.

A variant's points take turns in ``--rounds`` short windows (1080p, 360p, and for pixels 360p paced at the 1080p
window's rate), so that this machine's speed drifting during the run moves them alike; the report gives the
1080p-over-360p ratio of each window beside the ratio of the sums.

Three variants in one run: ``before`` is the path before issue 30 (``[api] send = "image"``: the API tier forwards
the encoded file, the stubs trim freed memory after every execute, ``BLIP_MALLOC_TRIM=execute``, and the colocated
model takes what is queued, ``max_queue_delay_us=0``); ``image`` is the encoded path with today's trim (at most once
a second) and batching delay (4 ms); ``pixels`` is today's default (``send = "pixels"``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from blip_bench.bench import machine
from blip_bench.corpus import camera_frame
from blip_bench.frames import RESULTS, write_report
from blip_bench.host import HOST_MODEL, execution_counts, in_process, requests_per_execute, tree_cpu_seconds
from blip_bench.stack import AUTH, ApiProcess, write_api_config
from blip_bench.workspace import prepare
from blip_contract.version import add_version_option
from blip_serving.deployment import Deployment
from blip_serving.spec import COMPONENT_NAMES, PUBLIC_MODEL
from blip_serving.triton.process import TritonServer

BEHAVIORS = ("barking", "chewing_furniture", "on_the_couch")
INF2_VCPUS = 4
# (name, [api] send, BLIP_MALLOC_TRIM of the fleet's stubs, the colocated model's batching delay: None is today's
# Deployment default; "before" takes the 0 of before issue 30)
VARIANTS = (
    ("before", "image", "execute", 0),
    ("image", "image", "always", None),
    ("pixels", "pixels", "always", None),
)
CHIP_FPS = 450  # issue 30: the Neuron SDK's ViT-B/16 figures scaled to 384 px, the text steps added
PACED = "640x360_at_the_1080p_rate"


def drive(
    api_url: str, image: bytes, concurrency: int, seconds: float, fps: float | None = None
) -> tuple[int, int, float]:
    """``concurrency`` callers posting the frame for ``seconds``, together at most ``fps`` frames a second where
    given: (answered, failed, elapsed seconds)."""
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    interval, next_slot = (1.0 / fps if fps else 0.0), [time.monotonic()]

    def caller() -> None:
        with httpx.Client(timeout=60) as client:
            while time.monotonic() < stop:
                if interval:
                    with lock:
                        slot = next_slot[0] = max(next_slot[0], time.monotonic()) + interval
                    time.sleep(max(slot - interval - time.monotonic(), 0.0))
                response = client.post(
                    f"{api_url}/v1/frames",
                    content=image,
                    params={"behavior": list(BEHAVIORS)},
                    headers=AUTH | {"Content-Type": "image/jpeg"},
                )
                with lock:
                    counts["ok" if response.status_code == 200 else "failed"] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=caller) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts["ok"], counts["failed"], time.monotonic() - started


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class Point:
    """One load point's sums over its windows: frames (Triton's count), answers, seconds, CPU by process, executes.

    The points of a variant take turns in short windows (``rounds`` of them), so that a drift in this machine's
    speed during the run falls on every point alike instead of on whichever ran last: the ratios between points are
    the figures the goals compare, and two points measured one after the other moved by up to 30% between runs."""

    def __init__(self) -> None:
        self.answered = self.failed = 0
        self.elapsed = self.api_s = 0.0
        self.fleet_s: dict[str, float] = {}
        self.counts: dict[str, tuple[int, int]] = {}
        self.windows: list[dict[str, float]] = []

    def window(
        self,
        server: TritonServer,
        api: ApiProcess,
        stats: Any,
        image: bytes,
        concurrency: int,
        seconds: float,
        fps: float | None = None,
    ) -> None:
        """Drive one window and add what it cost."""
        api_process = psutil.Process(api.process.pid)
        fleet_before, api_before, counts_before = (
            tree_cpu_seconds(server.process.pid),
            cpu_s(api_process),
            execution_counts(stats),
        )
        ok, failed, elapsed = drive(api.url, image, concurrency, seconds, fps)
        fleet_after, api_after, counts_after = (
            tree_cpu_seconds(server.process.pid),
            cpu_s(api_process),
            execution_counts(stats),
        )
        self.answered, self.failed, self.elapsed = self.answered + ok, self.failed + failed, self.elapsed + elapsed
        self.api_s += api_after - api_before
        fleet = {role: fleet_after[role] - fleet_before.get(role, 0.0) for role in fleet_after}
        for role, used in fleet.items():
            self.fleet_s[role] = self.fleet_s.get(role, 0.0) + used
        for model, (inferences, executions) in counts_after.items():
            done = self.counts.get(model, (0, 0))
            before = counts_before.get(model, (0, 0))
            self.counts[model] = (done[0] + inferences - before[0], done[1] + executions - before[1])
        frames = counts_after[PUBLIC_MODEL][0] - counts_before[PUBLIC_MODEL][0]
        self.windows.append(
            {"fps": ok / elapsed, "fleet_cpu_ms_per_frame": sum(fleet.values()) * 1000 / max(frames, 1)}
        )

    @property
    def fps(self) -> float:
        return round(self.answered / self.elapsed, 1)

    def summary(self) -> dict[str, Any]:
        frames = self.counts[PUBLIC_MODEL][0]  # the python model: both forms reach it
        fleet = {role: used * 1000 / frames for role, used in self.fleet_s.items()}
        return {
            "frames": frames,
            "answered": self.answered,
            "failed": self.failed,
            "fps": self.fps,
            "fleet_cpu_ms_per_frame": round(sum(fleet.values()), 2),
            "fleet_cpu_ms_by_process": {role: round(ms, 2) for role, ms in fleet.items()},
            "api_cpu_ms_per_frame": round(self.api_s * 1000 / frames, 2),
            "requests_per_execute": requests_per_execute({}, self.counts),
            "windows": len(self.windows),
        }


def measure(
    server: TritonServer,
    api: ApiProcess,
    sizes: dict[str, bytes],
    concurrency: int,
    seconds: float,
    rounds: int,
    paced: bool,
) -> dict[str, Point]:
    """Every size (and, where ``paced``, 640x360 at the rate 1080p reached in the same round), each ``seconds`` in
    all, in ``rounds`` turns."""
    import tritonclient.grpc as grpc

    for image in sizes.values():
        drive(api.url, image, concurrency, 2.0)  # warm: connections, the fleet's settings, the stubs' first frames
    points = {name: Point() for name in sizes} | ({PACED: Point()} if paced else {})
    stats = grpc.InferenceServerClient(server.grpc_url)
    try:
        for _ in range(rounds):
            for name, image in sizes.items():
                points[name].window(server, api, stats, image, concurrency, seconds / rounds)
            if paced:
                # The same load at both sizes: 640x360 at the frame rate the 1080p window reached, so that the fleet
                # batches alike and only the resolution differs (8 free callers batch 360p more).
                rate = points["1920x1080"].windows[-1]["fps"]
                points[PACED].window(server, api, stats, sizes["640x360"], concurrency, seconds / rounds, fps=rate)
    finally:
        stats.close()
    return points


def window_ratios(points: dict[str, Point], over: str) -> list[float | None]:
    """The fleet's 1080p CPU per frame over ``over``'s, window by window: the spread of the one-run figure (None
    for a window too short to have run a frame)."""
    return [
        round(high["fleet_cpu_ms_per_frame"] / low["fleet_cpu_ms_per_frame"], 3)
        if low["fleet_cpu_ms_per_frame"] > 0
        else None
        for high, low in zip(points["1920x1080"].windows, points[over].windows, strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="blip-bench-pixels", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default=HOST_MODEL, help="default random-host (the host path of the real model)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=40.0, help="seconds per point, in all its windows")
    parser.add_argument("--rounds", type=int, default=10, help="windows per point, the points taking turns")
    parser.add_argument("--in-process-frames", type=int, default=40, help="frames timed in process per size")
    parser.add_argument(
        "--fast-resize",
        action="store_true",
        help="a fleet deployed with fast resize (reduced JPEG decode, box reduction first): the API tier follows it",
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=1,
        help="torch threads of the fleet's instance (default 1: a core for the fleet, the other cores for the API\n"
        "tier beside it, as separate hosts would have; 0: every core, as a cpu fleet alone on its host runs)",
    )
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/pixels-cpu[-fast].json")
    args = add_version_option(parser).parse_args(argv)
    workspace = prepare(args.model, "cpu", **({"root": args.workspace} if args.workspace else {}))
    deployment = Deployment(layout="colocated", fast_resize=args.fast_resize, intra_op_threads=args.intra_op_threads)
    spec = workspace.manifest.spec
    sizes = {"1920x1080": camera_frame(1920, 1080), "640x360": camera_frame(640, 360)}
    info = machine()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores; {args.model}, colocated, {args.concurrency} callers, "
        f"fleet torch threads {args.intra_op_threads or 'all cores'}",
        flush=True,
    )
    # The model's own compute per frame, in process at one torch thread: what a NeuronCore would do instead.
    model_ms = {}
    for name, image in sizes.items():
        stages = in_process(workspace, image, 1, args.in_process_frames)
        model_ms[name] = round(sum(stages[c] for c in COMPONENT_NAMES), 2)
    pixel_bytes = spec.image_height * spec.image_width * spec.num_channels
    report: dict[str, Any] = {
        "machine": info,
        "model": args.model,
        "layout": "colocated",
        "fast_resize": args.fast_resize,
        "concurrency": args.concurrency,
        "fleet_intra_op_threads": args.intra_op_threads,
        "seconds_per_point": args.seconds,
        "windows_per_point": args.rounds,
        "behaviors": list(BEHAVIORS),
        "model_compute_ms_per_frame": model_ms,
        "wire_bytes_per_frame": {"pixels": pixel_bytes, **{name: len(image) for name, image in sizes.items()}},
        "forms": {},
    }
    work = workspace.artifacts.parent / "bench-pixels"
    work.mkdir(parents=True, exist_ok=True)
    for variant, form, trim, delay in VARIANTS:
        deployed = deployment if delay is None else deployment.replaced(max_queue_delay_us=delay)
        workspace.deploy(deployed)
        env = dict(os.environ, BLIP_MALLOC_TRIM=trim)
        with TritonServer(workspace.repository, "cpu", layout="colocated", env=env) as server:
            config = write_api_config(
                work / f"api-{variant}.toml", {"fleet": server.http_url}, sections={"api": {"send": form}}
            )
            api = ApiProcess(config, work / f"api-{variant}.log", db_url=f"sqlite:///{work / 'events.sqlite3'}")
            try:
                report["forms"][variant] = {
                    "send": form,
                    "malloc_trim": trim,
                    "max_queue_delay_us": deployed.max_queue_delay_us,
                }
                points = measure(
                    server, api, sizes, args.concurrency, args.seconds, args.rounds, paced=form == "pixels"
                )
                for name, image in sizes.items():
                    measured = points[name].summary()
                    host_only = measured["fleet_cpu_ms_per_frame"] - model_ms[name]
                    measured["fleet_host_only_cpu_ms_per_frame"] = round(host_only, 2)
                    measured["inf2_xlarge_fps_its_vcpus_feed"] = round(INF2_VCPUS * 1000 / max(host_only, 0.01))
                    measured["total_cpu_ms_per_frame"] = round(
                        measured["fleet_cpu_ms_per_frame"] + measured["api_cpu_ms_per_frame"], 2
                    )
                    wire = pixel_bytes if form == "pixels" else len(image)
                    ceiling = min(measured["inf2_xlarge_fps_its_vcpus_feed"], CHIP_FPS)
                    measured["wire_bytes_per_frame"] = wire
                    measured["api_to_inf2_mbit_s_at_its_ceiling"] = round(wire * 8 * ceiling / 1e6, 1)
                    measured["api_cpu_cores_to_feed_one_inf2_at_its_ceiling"] = round(
                        measured["api_cpu_ms_per_frame"] * ceiling / 1000, 2
                    )
                    report["forms"][variant][name] = measured
                    print(
                        f"{variant:6} {name:9}: {measured['fps']:6.1f} frames/s, fleet {measured['fleet_cpu_ms_per_frame']:5.1f} "
                        f"CPU-ms/frame (host only {host_only:5.1f}: an inf2.xlarge's 4 vCPUs feed "
                        f"{measured['inf2_xlarge_fps_its_vcpus_feed']} frames/s, the chip about {CHIP_FPS}), API tier "
                        f"{measured['api_cpu_ms_per_frame']:5.1f}, total {measured['total_cpu_ms_per_frame']:5.1f}; "
                        f"{wire} bytes/frame on the wire; per execute {measured['requests_per_execute']}",
                        flush=True,
                    )
                report["forms"][variant]["fleet_1080p_over_360p_by_window"] = window_ratios(points, "640x360")
                if form == "pixels":
                    paced = report["forms"][variant][PACED] = points[PACED].summary()
                    report["forms"][variant]["fleet_1080p_over_360p_at_equal_load_by_window"] = window_ratios(
                        points, PACED
                    )
                    print(
                        f"{variant:6} 640x360 at the 1080p windows' rates: {paced['fps']:6.1f} frames/s, "
                        f"fleet {paced['fleet_cpu_ms_per_frame']:5.1f} CPU-ms/frame; per execute "
                        f"{paced['requests_per_execute']}",
                        flush=True,
                    )
            finally:
                api.stop()
    pixels, image = report["forms"]["pixels"], report["forms"]["before"]
    report["goals"] = {
        "fleet_cpu_ms_1080p_at_most_10": pixels["1920x1080"]["fleet_cpu_ms_per_frame"],
        "fleet_1080p_over_360p_at_most_1.2": round(
            pixels["1920x1080"]["fleet_cpu_ms_per_frame"] / pixels["640x360"]["fleet_cpu_ms_per_frame"], 3
        ),
        "fleet_1080p_over_360p_at_equal_load": round(
            pixels["1920x1080"]["fleet_cpu_ms_per_frame"] / pixels[PACED]["fleet_cpu_ms_per_frame"],
            3,
        ),
        "total_not_above_before": {
            name: [image[name]["total_cpu_ms_per_frame"], pixels[name]["total_cpu_ms_per_frame"]] for name in sizes
        },
        "inf2_ceiling_before_after_1080p": [
            image["1920x1080"]["inf2_xlarge_fps_its_vcpus_feed"],
            pixels["1920x1080"]["inf2_xlarge_fps_its_vcpus_feed"],
        ],
    }
    print(f"goals: {json.dumps(report['goals'])}", flush=True)
    write_report(report, args.out or RESULTS / f"pixels-cpu{'-fast' if args.fast_resize else ''}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
