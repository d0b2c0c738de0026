"""The soak run: workers send the traffic, a sampler watches every process, chaos kills; then the verdict."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from blip_bench.frames import RESULTS
from blip_bench.soak.chaos import Chaos
from blip_bench.soak.config import (
    CHAOS_UNFINISHED,
    FLEET_VICTIM,
    FLEETS,
    LOAD_GENERATOR,
    LOAD_STOPPED,
    MAX_IMAGE_BYTES,
    Outcome,
    SoakConfig,
)
from blip_bench.soak.judge import incarnations, verdict
from blip_bench.soak.report import summary, write
from blip_bench.soak.traffic import Traffic
from blip_bench.stack import ApiProcess, Fleet, write_api_config
from blip_bench.workspace import DEFAULT_WORKSPACE, prepare
from blip_contract.version import add_version_option
from blip_serving.deployment import Deployment
from blip_serving.manifest import read_manifest
from blip_serving.model_config import write_repository_configs


@dataclass
class Soak:
    config: SoakConfig
    repository: Path
    workdir: Path
    outcomes: list[Outcome] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    heals: dict[str, Any] = field(default_factory=dict)  # seconds from each kill to answering, by itself and routed
    # (served, switched to): FLEET_VICTIM follows a version file, switched under load and rolled back (chaos).
    versions: tuple[int, int] | None = None
    started: float = 0.0

    def now(self) -> float:
        return time.monotonic() - self.started

    def event(self, name: str, **details: Any) -> None:
        self.events.append({"t": round(self.now(), 2), "event": name, **details})
        print(f"[{self.now():7.1f} s] {name} {details if details else ''}", flush=True)

    async def worker(self, index: int, traffic: Traffic, api: ApiProcess, stop: asyncio.Event) -> None:
        rng = random.Random(self.config.seed * 100 + index)
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
            while not stop.is_set():
                request = traffic.next(rng)
                sent = time.monotonic()
                backend, detail = None, ""
                try:
                    response = await client.request(request.method, request.path, **request.options)
                    status = response.status_code
                    with contextlib.suppress(ValueError):
                        body = response.json()
                        backend = body.get("backend")
                        detail = str(body.get("error", ""))[:200]
                except httpx.HTTPError as error:
                    status, detail = 0, f"{type(error).__name__}: {error}"[:200]
                self.outcomes.append(
                    Outcome(
                        t=round(sent - self.started, 3),
                        kind=request.kind,
                        case=request.case,
                        status=status,
                        ok=status in request.expected,
                        valid=request.valid,
                        ms=round((time.monotonic() - sent) * 1000, 1),
                        backend=backend,
                        detail=detail,
                    )
                )

    def sample(self, api: ApiProcess, fleets: dict[str, Fleet]) -> None:
        # The load generator too: its own CPU use is part of what this machine's two cores do.
        processes = {"api": psutil.Process(api.process.pid), LOAD_GENERATOR: psutil.Process()}
        for name, fleet in fleets.items():
            processes |= {f"{name}/{role}": process for role, process in fleet.processes().items()}
        t = round(self.now(), 2)
        for role, process in processes.items():
            with contextlib.suppress(psutil.Error), process.oneshot():
                self.samples.append(
                    {
                        "t": t,
                        "role": role,
                        "pid": process.pid,
                        "rss": process.memory_info().rss,
                        "fds": process.num_fds(),
                        "threads": process.num_threads(),
                        "cpu_s": round(sum(process.cpu_times()[:2]), 2),
                    }
                )

    async def sampler(self, api: ApiProcess, fleets: dict[str, Fleet], stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self.sample, api, fleets)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.sample_s)

    async def until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.now()))

    async def drive(self, api: ApiProcess, fleets: dict[str, Fleet]) -> None:
        traffic, stop = Traffic(), asyncio.Event()
        self.started = time.monotonic()
        self.event("load started", concurrency=self.config.concurrency, seconds=self.config.seconds)
        tasks = [asyncio.create_task(self.worker(i, traffic, api, stop)) for i in range(self.config.concurrency)]
        tasks.append(asyncio.create_task(self.sampler(api, fleets, stop)))
        chaos = asyncio.create_task(Chaos(self).run_against(api, fleets))
        await self.until(self.config.seconds)
        if not chaos.done():
            self.event("load goes on until the chaos ends", at_most_s=self.config.overrun_s)
            await asyncio.wait([chaos], timeout=self.config.overrun_s)
        if not chaos.done():
            chaos.cancel()
            self.event(CHAOS_UNFINISHED)
        stop.set()
        await asyncio.gather(*tasks)
        with contextlib.suppress(asyncio.CancelledError):
            await chaos
        self.event(LOAD_STOPPED, requests=len(self.outcomes))

    def run(self) -> dict[str, Any]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        fleets = {name: Fleet(name, layout, self.repository, self.workdir) for name, layout in FLEETS.items()}
        if self.versions is not None:
            victim = fleets[FLEET_VICTIM]
            victim.version_file = self.workdir / f"{FLEET_VICTIM}.version"
            victim.version_file.write_text(f"{self.versions[0]}\n")
        api = None
        try:
            for fleet in fleets.values():
                fleet.start()
            for fleet in fleets.values():
                fleet.wait_answering()
            config = write_api_config(
                self.workdir / "api.toml",
                {name: fleet.http_url for name, fleet in fleets.items()},
                api={"max_image_bytes": MAX_IMAGE_BYTES},
                request_timeout_s=self.config.request_timeout_s,
            )
            api = ApiProcess(config, self.workdir / "api.log")
            asyncio.run(self.drive(api, fleets))
        finally:
            if api is not None:
                api.stop()
            for fleet in fleets.values():
                fleet.stop()
        return self.report()

    def incarnations(self) -> list[dict[str, Any]]:
        return incarnations(self.config, self.samples, self.events)

    def report(self) -> dict[str, Any]:
        return verdict(self.config, self.outcomes, self.samples, self.events, self.heals)


def prepare_repository(model: str, workdir: Path) -> Path:
    """Build ``model`` for cpu (up to date builds are reused) and write both fleets' configs, one torch thread per
    stub: two fleets, the API tier and the load share this machine's cores."""
    workspace = prepare(model, "cpu", root=DEFAULT_WORKSPACE / "soak")
    repository = workdir / "model_repository"
    shutil.copytree(workspace.repository, repository, ignore=shutil.ignore_patterns("configs"), dirs_exist_ok=True)
    configure_repository(repository, workspace.target_dir)
    return repository


def configure_repository(repository: Path, artifacts: Path) -> None:
    spec = read_manifest(artifacts).spec
    for layout in FLEETS.values():
        write_repository_configs(spec, "cpu", repository, artifacts, Deployment(layout=layout, intra_op_threads=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blip-soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--request-timeout-s", type=float, default=20.0, help="the router's per-attempt limit")
    parser.add_argument("--model", default="random-tiny")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak-cpu", help="report stem: <out>.json, <out>.png")
    args = add_version_option(parser).parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="blip-soak-"))
    repository = prepare_repository(args.model, workdir)
    config = SoakConfig(seconds=args.seconds, concurrency=args.concurrency, request_timeout_s=args.request_timeout_s)
    soak = Soak(config, repository, workdir)
    report = soak.run()
    report["model"] = args.model
    write(report, args.out)
    print(summary(report))
    print(f"report: {args.out.with_suffix('.json')}  chart: {args.out.with_suffix('.png')}")
    if report["passed"]:
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"logs of the API tier and the fleets kept in {workdir}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
