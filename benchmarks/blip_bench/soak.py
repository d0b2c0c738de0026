"""`make soak`: the API tier and two self-healing fleets on loopback under bounded, mixed traffic.

Fleet ``neuron`` runs the colocated layout and fleet ``gpu`` the ensemble (both on the cpu target here), behind
the API tier, as `make serve` and `make api` run them. Client workers (asyncio + httpx, seeded) send for
``--seconds``: valid frames (behaviors, free questions), bad images from the corpus, fuzzed images, malformed
requests, oversize bodies and header blocks, missing and wrong tokens. During the warm-up each fleet carries all
the traffic in turn (through the API tier's weights). At 35%, one Python stub of ``gpu`` is SIGKILLed (its
supervisor must heal it); at 60%, every process of fleet ``neuron`` is SIGKILLed and the fleet is started again
after a runtime's restart delay. RSS, open descriptors, threads and CPU time of every process are sampled
throughout.

It passes when no valid request failed, every bad request got its documented status, no process's RSS grew more
than 5% from the end of its warm-up to the end, and no descriptor or thread count kept growing. A JSON report, a
PNG (RSS, CPU, latency p50/p99, request rate, with the kills marked) and every response and sample as gzipped CSV
are written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import gzip
import io
import json
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import psutil

from blip_bench.corpus import generated_images
from blip_bench.stack import ADMIN, AUTH, ROOT, ApiProcess, Fleet, write_api_config
from blip_serving.deploy.triton_config import Deployment, write_repository_configs
from blip_serving.manifest import read_manifest

RESULTS = ROOT / "benchmarks" / "results"
FLEETS = {"neuron": "colocated", "gpu": "ensemble"}
STUB_VICTIM = ("gpu", "text_decoder_0_0")
FLEET_VICTIM = "neuron"
MAX_IMAGE_BYTES = 1 << 20  # the soak's API limit: oversize bodies stay cheap to send
RSS_GROWTH_LIMIT = 0.05
HEAL_TARGET_S = 15.0
READY_EVENTS = ("stub kill healed", "fleet answering again")
LOAD_GENERATOR = "load generator"
EXTRA_IMAGES = ROOT.parent / "shared" / "images"


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = 600.0
    concurrency: int = 4
    seed: int = 20261126
    sample_s: float = 1.0
    restart_delay_s: float = 2.0  # a container runtime's back-off before it starts a killed container again
    request_timeout_s: float = 20.0  # the router's per-attempt limit: a request stuck on a dying stub waits this

    @property
    def warmup_s(self) -> float:
        return min(60.0, 0.2 * self.seconds)

    @property
    def stub_kill_at(self) -> float:
        return 0.35 * self.seconds

    @property
    def fleet_kill_at(self) -> float:
        return 0.6 * self.seconds


# ---------------------------------------------------------------------------------------------------------------
# Traffic: each request kind builds an httpx request and names the statuses its answer may have.


@dataclass(frozen=True)
class Request:
    kind: str
    case: str
    expected: frozenset[int]
    method: str = "POST"
    path: str = "/v1/frames"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.expected == {200}


class Traffic:
    """Seeded request generator over the project's own corpus (and ../shared/images where it exists)."""

    WEIGHTS: ClassVar[dict[str, int]] = {
        "behaviors": 40,
        "questions": 15,
        "corpus_invalid": 10,
        "fuzzed_image": 10,
        "malformed": 12,
        "oversize": 4,
        "auth": 9,
    }
    QUESTIONS = ("what is the animal doing?", "Is the dog barking?", "what color is the cat?", "Is it dark?")
    BEHAVIORS = ("barking", "chewing_furniture", "on_the_couch", "eating", "sleeping")

    def __init__(self) -> None:
        corpus = generated_images()
        self.valid = [p.read_bytes() for p in sorted((corpus / "valid").iterdir())]
        self.invalid = [p.read_bytes() for p in sorted((corpus / "invalid").iterdir())]
        for kind, images in (("valid", self.valid), ("invalid", self.invalid)):
            extra = EXTRA_IMAGES / kind
            if extra.is_dir():
                images += [p.read_bytes() for p in sorted(extra.iterdir()) if p.stat().st_size <= MAX_IMAGE_BYTES]
        self.valid = [image for image in self.valid if len(image) <= MAX_IMAGE_BYTES]
        self.builders: dict[str, Callable[[random.Random], Request]] = {
            "behaviors": self.behaviors,
            "questions": self.questions,
            "corpus_invalid": self.corpus_invalid,
            "fuzzed_image": self.fuzzed_image,
            "malformed": self.malformed,
            "oversize": self.oversize,
            "auth": self.auth,
        }

    def next(self, rng: random.Random) -> Request:
        kind = rng.choices(list(self.WEIGHTS), weights=list(self.WEIGHTS.values()))[0]
        return self.builders[kind](rng)

    @staticmethod
    def raw(image: bytes, headers: dict[str, str] | None = None, **params: Any) -> dict[str, Any]:
        sent = AUTH if headers is None else headers
        return {"content": image, "params": params, "headers": sent | {"Content-Type": "image/jpeg"}}

    def behaviors(self, rng: random.Random) -> Request:
        asked = rng.sample(self.BEHAVIORS, rng.randint(1, 3))
        return Request(
            "behaviors",
            "raw body, behaviors",
            frozenset({200}),
            options=self.raw(rng.choice(self.valid), behavior=asked),
        )

    def questions(self, rng: random.Random) -> Request:
        fields = {"question": [rng.choice(self.QUESTIONS)], "behavior": [rng.choice(self.BEHAVIORS)]}
        files = {"image": ("frame.jpg", rng.choice(self.valid), "image/jpeg")}
        return Request(
            "questions",
            "multipart, free question",
            frozenset({200}),
            options={"files": files, "data": fields, "headers": AUTH},
        )

    def corpus_invalid(self, rng: random.Random) -> Request:
        return Request(
            "corpus_invalid",
            "corpus invalid image",
            frozenset({400}),
            options=self.raw(rng.choice(self.invalid), behavior="barking"),
        )

    def fuzzed_image(self, rng: random.Random) -> Request:
        """A valid frame cut, bit-flipped or spliced: it may still decode, so an answer or a 400 are both right."""
        data = bytearray(rng.choice(self.valid))
        how = rng.choice(("truncate", "flip", "splice"))
        if how == "truncate":
            del data[rng.randrange(1, len(data)) :]
        elif how == "flip":
            for _ in range(rng.randint(1, 16)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        else:
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randint(1, 256))
        return Request(
            "fuzzed_image", f"fuzzed ({how})", frozenset({200, 400}), options=self.raw(bytes(data), behavior="sleeping")
        )

    def malformed(self, rng: random.Random) -> Request:
        image = rng.choice(self.valid)
        cases = {
            "wrong content type": (415, {"content": image, "headers": AUTH | {"Content-Type": "text/plain"}}),
            "multipart without image": (
                400,
                {"files": {"other": ("x.txt", b"x", "text/plain")}, "data": {"behavior": "barking"}, "headers": AUTH},
            ),
            "broken multipart": (
                400,
                {
                    "content": b"--b\r\nnot a part",
                    "headers": AUTH | {"Content-Type": "multipart/form-data; boundary=b"},
                },
            ),
            "unknown behavior": (400, self.raw(image, behavior="howling")),
            "no question": (400, self.raw(image)),
            "blank question": (400, self.raw(image, question="   ")),
            "too many questions": (400, self.raw(image, question=["Is it?"] * 17)),
            "question too long": (400, self.raw(image, question="why " * 80)),
            "empty body": (400, self.raw(b"", behavior="barking")),
        }
        case = rng.choice(sorted(cases))
        status, options = cases[case]
        return Request("malformed", case, frozenset({status}), options=options)

    def oversize(self, rng: random.Random) -> Request:
        if rng.random() < 0.5:
            body = rng.randbytes(MAX_IMAGE_BYTES + 70 * 1024)
            return Request(
                "oversize", "body over the limit", frozenset({413}), options=self.raw(body, behavior="barking")
            )
        headers = AUTH | {f"X-Filler-{i}": "x" * 512 for i in range(40)}
        return Request(
            "oversize",
            "header block over the limit",
            frozenset({431}),
            options=self.raw(rng.choice(self.valid), headers=headers, behavior="barking"),
        )

    def auth(self, rng: random.Random) -> Request:
        image = rng.choice(self.valid)
        if rng.random() < 0.5:
            return Request(
                "auth", "missing token", frozenset({401}), options=self.raw(image, headers={}, behavior="barking")
            )
        wrong = {"Authorization": "Bearer not-the-token"}
        return Request(
            "auth", "wrong token", frozenset({401}), options=self.raw(image, headers=wrong, behavior="barking")
        )


# ---------------------------------------------------------------------------------------------------------------
# The run.


@dataclass
class Outcome:
    t: float
    kind: str
    case: str
    status: int
    ok: bool
    valid: bool
    ms: float
    backend: str | None
    detail: str = ""


@dataclass
class Soak:
    config: SoakConfig
    repository: Path
    workdir: Path
    outcomes: list[Outcome] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    heals: dict[str, Any] = field(default_factory=dict)  # seconds from each kill to answering, by itself and routed
    started: float = 0.0

    def now(self) -> float:
        return time.monotonic() - self.started

    def event(self, name: str, **details: Any) -> None:
        self.events.append({"t": round(self.now(), 2), "event": name, **details})
        print(f"[{self.now():7.1f} s] {name} {details if details else ''}", flush=True)

    async def worker(self, index: int, traffic: Traffic, api: ApiProcess, deadline: float) -> None:
        rng = random.Random(self.config.seed * 100 + index)
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
            while time.monotonic() < deadline:
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

    async def sampler(self, api: ApiProcess, fleets: dict[str, Fleet], deadline: float) -> None:
        while time.monotonic() < deadline:
            await asyncio.to_thread(self.sample, api, fleets)
            await asyncio.sleep(self.config.sample_s)

    async def until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.now()))

    async def set_weights(self, api: ApiProcess, weights: dict[str, float]) -> None:
        # Raise before lowering: lowering first would drain every fleet for a moment (and the router then answers
        # 503, as it must when every weight is 0).
        async with httpx.AsyncClient(base_url=api.url, headers=ADMIN, timeout=10) as admin:
            for name, weight in sorted(weights.items(), key=lambda item: -item[1]):
                (await admin.put(f"/admin/backends/{name}/weight", json={"weight": weight})).raise_for_status()
        self.event("routing weights set", **weights)

    async def chaos(self, api: ApiProcess, fleets: dict[str, Fleet]) -> None:
        """Warm each fleet at full load, then kill a stub, then a whole fleet; time how long until each answers
        again, by itself and via the API."""
        config = self.config
        # Warm-up: all traffic on one fleet, then on the other, so that each grows its thread and connection
        # pools to what it needs when it carries everything (as it will while the other is down) before the
        # judged window starts: a pool growing once is not a leak.
        names = list(fleets)
        for index, name in enumerate(names):
            await self.set_weights(api, {other: float(other == name) for other in names})
            await self.until(config.warmup_s * (index + 1) / (len(names) + 1))
        await self.set_weights(api, dict.fromkeys(names, 1.0))
        await self.until(config.stub_kill_at)
        name, instance = STUB_VICTIM
        fleet = fleets[name]
        pid = fleet.kill_stub(instance)
        killed = time.monotonic()
        self.event("stub killed", fleet=name, instance=instance, pid=pid)
        heal_s = await asyncio.to_thread(fleet.wait_answering, 60.0)
        self.event("stub kill healed", fleet=name, answering_after_s=round(heal_s, 2))
        probe = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "blip_client", "probe", "--url", fleet.http_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.event(
            "blip-client probe after the heal", exit=probe.returncode, said=(probe.stdout + probe.stderr).strip()
        )
        routed_s = await self.back_in_router(api, name, killed)
        self.event("fleet back in the router", fleet=name, after_s=routed_s)
        self.heals = {
            "stub_kill_to_answer_s": round(heal_s, 2),
            "stub_kill_to_router_healthy_s": routed_s,
            "probe_exit_after_heal": probe.returncode,
        }

        await self.until(config.fleet_kill_at)
        fleet = fleets[FLEET_VICTIM]
        await asyncio.to_thread(fleet.kill_all)
        killed = time.monotonic()
        self.event("fleet killed (every process)", fleet=FLEET_VICTIM)
        await asyncio.sleep(config.restart_delay_s)
        fleet.start()
        self.event("fleet restarted by the runtime", fleet=FLEET_VICTIM)
        await asyncio.to_thread(fleet.wait_answering, 180.0)
        heal_s = time.monotonic() - killed
        self.event("fleet answering again", fleet=FLEET_VICTIM, after_kill_s=round(heal_s, 2))
        routed_s = await self.back_in_router(api, FLEET_VICTIM, killed)
        self.event("fleet back in the router", fleet=FLEET_VICTIM, after_s=routed_s)
        self.heals |= {"fleet_kill_to_answer_s": round(heal_s, 2), "fleet_kill_to_router_healthy_s": routed_s}

    async def back_in_router(self, api: ApiProcess, name: str, since: float, timeout_s: float = 60.0) -> float | None:
        """Seconds from ``since`` until the API tier's probes mark the fleet healthy again (None: not in time)."""
        # The router may not have noticed the kill yet: wait to see it unhealthy first, briefly.
        for want in (False, True):
            deadline = time.monotonic() + (3.0 if not want else timeout_s)
            while time.monotonic() < deadline:
                status = await asyncio.to_thread(api.backends)
                if status[name]["healthy"] is want:
                    break
                await asyncio.sleep(0.1)
            else:
                if want:
                    return None
        return round(time.monotonic() - since, 2)

    async def drive(self, api: ApiProcess, fleets: dict[str, Fleet]) -> None:
        traffic = Traffic()
        self.started = time.monotonic()
        deadline = self.started + self.config.seconds
        self.event("load started", concurrency=self.config.concurrency, seconds=self.config.seconds)
        tasks = [asyncio.create_task(self.worker(i, traffic, api, deadline)) for i in range(self.config.concurrency)]
        tasks.append(asyncio.create_task(self.sampler(api, fleets, deadline)))
        chaos = asyncio.create_task(self.chaos(api, fleets))
        await asyncio.gather(*tasks)
        if not chaos.done():
            chaos.cancel()
            self.event("chaos did not finish within the run")
        with contextlib.suppress(asyncio.CancelledError):
            await chaos
        self.event("load stopped", requests=len(self.outcomes))

    def run(self) -> dict[str, Any]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        fleets = {name: Fleet(name, layout, self.repository, self.workdir) for name, layout in FLEETS.items()}
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

    # -----------------------------------------------------------------------------------------------------------
    # Judgement.

    def incarnations(self) -> list[dict[str, Any]]:
        """Per process (role and pid): growth of RSS, descriptors and threads over its judged window."""
        warmup = self.config.warmup_s
        by_process: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for sample in self.samples:
            if sample["role"] != LOAD_GENERATOR:  # it keeps every response by design; sampled for its CPU only
                by_process.setdefault((sample["role"], sample["pid"]), []).append(sample)
        result = []
        # A process started mid-run (a healed stub, a restarted fleet) warms up from when its fleet answered again.
        ready = [(e["fleet"], e["t"]) for e in self.events if e["event"] in READY_EVENTS]
        for (role, pid), series in sorted(by_process.items(), key=lambda item: (item[0][0], item[1][0]["t"])):
            born = series[0]["t"]
            answering = min((t for fleet, t in ready if role.startswith(f"{fleet}/") and t >= born), default=born)
            start = warmup if born < warmup else answering + warmup
            judged = [s for s in series if s["t"] >= start]
            entry: dict[str, Any] = {"role": role, "pid": pid, "from_s": born, "to_s": series[-1]["t"]}
            if len(judged) < 10 or judged[-1]["t"] - judged[0]["t"] < max(10.0, 0.2 * self.config.seconds):
                entry["judged"] = False  # lived too briefly after its warm-up to say anything
                result.append(entry)
                continue
            tenth = max(3, len(judged) // 10)
            head, tail = judged[:tenth], judged[-tenth:]

            def median(rows: list[dict[str, Any]], key: str) -> float:
                return statistics.median(r[key] for r in rows)

            rss0, rss1 = median(head, "rss"), median(tail, "rss")
            entry |= {
                "judged": True,
                "window_s": [judged[0]["t"], judged[-1]["t"]],
                "rss_mib": [round(rss0 / 2**20, 1), round(rss1 / 2**20, 1)],
                "rss_growth": round(rss1 / rss0 - 1, 4),
                "fds": [median(head, "fds"), median(tail, "fds")],
                "threads": [median(head, "threads"), median(tail, "threads")],
            }
            entry["rss_ok"] = entry["rss_growth"] <= RSS_GROWTH_LIMIT
            # "Keeps growing" is a trend, not a step: a pool that grew once (all traffic on one fleet while the
            # other was down) and stays is fine; a leak shows the last third above everything in the middle one.
            third = len(judged) // 3
            middle, last = judged[third : 2 * third], judged[2 * third :]
            for key, slack in (("fds", 2), ("threads", 2)):
                rise = median(last, key) - max(r[key] for r in middle)
                entry[f"{key}_trend"] = rise
                entry[f"{key}_ok"] = rise <= slack
            result.append(entry)
        return result

    def report(self) -> dict[str, Any]:
        outcomes = self.outcomes
        valid = [o for o in outcomes if o.valid]
        latencies = sorted(o.ms for o in valid if o.status == 200)
        by_kind: dict[str, dict[str, int]] = {}
        for o in outcomes:
            counts = by_kind.setdefault(o.kind, {})
            counts[str(o.status)] = counts.get(str(o.status), 0) + 1
        wrong = [asdict(o) for o in outcomes if not o.ok]
        processes = self.incarnations()
        judged = [p for p in processes if p["judged"]]
        heals = self.heals
        checks = {
            "no valid request failed": not [o for o in valid if not o.ok],
            "every bad request got its documented status": not [o for o in outcomes if not o.valid and not o.ok],
            f"no RSS grew more than {RSS_GROWTH_LIMIT:.0%}": all(p["rss_ok"] for p in judged),
            "no descriptor count kept growing": all(p["fds_ok"] for p in judged),
            "no thread count kept growing": all(p["threads_ok"] for p in judged),
            f"a killed stub healed within {HEAL_TARGET_S:.0f} s": heals.get("stub_kill_to_answer_s", 1e9)
            <= HEAL_TARGET_S,
            "blip-client probe passed after the heal": heals.get("probe_exit_after_heal") == 0,
            "both kills happened and healed": "fleet_kill_to_router_healthy_s" in heals
            and heals.get("stub_kill_to_router_healthy_s") is not None
            and heals.get("fleet_kill_to_router_healthy_s") is not None,
            "every process was judged": bool(judged),
        }

        def percentile(values: list[float], q: float) -> float | None:
            return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else None

        return {
            "passed": all(checks.values()),
            "checks": checks,
            "config": asdict(self.config) | {"warmup_s": self.config.warmup_s},
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": psutil.cpu_count()},
            "requests": len(outcomes),
            "valid_requests": len(valid),
            "valid_failed": sum(not o.ok for o in valid),
            "bad_requests": len(outcomes) - len(valid),
            "bad_with_wrong_status": sum(not o.ok for o in outcomes if not o.valid),
            "valid_latency_ms": {
                "p50": percentile(latencies, 0.5),
                "p99": percentile(latencies, 0.99),
                "p999": percentile(latencies, 0.999),
                "max": latencies[-1] if latencies else None,
            },
            "by_kind_and_status": by_kind,
            "served_by": {b: sum(o.backend == b for o in valid) for b in FLEETS},
            "heals": heals,
            "events": self.events,
            "processes": processes,
            "unexpected": wrong[:50],
            "outcomes": [[o.t, o.kind, o.status, o.ms, o.backend, o.case, o.ok] for o in outcomes],
            "samples": self.samples,
        }


# ---------------------------------------------------------------------------------------------------------------
# Output.


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rss_axis, cpu_axis, latency_axis, rate_axis) = plt.subplots(4, 1, figsize=(12, 14), sharex=True)
    roles = sorted({s["role"] for s in report["samples"]})
    colors = {role: plt.cm.tab20(i % 20) for i, role in enumerate(roles)}
    for role in roles:
        for pid in sorted({s["pid"] for s in report["samples"] if s["role"] == role}):
            series = [s for s in report["samples"] if s["role"] == role and s["pid"] == pid]
            times = [s["t"] for s in series]
            if role != LOAD_GENERATOR:
                rss_axis.plot(times, [s["rss"] / 2**20 for s in series], color=colors[role], lw=1.2)
            # CPU in cores, over 10-sample steps so that one-second jitter does not hide the level.
            step = 10
            cores = [
                (b["cpu_s"] - a["cpu_s"]) / (b["t"] - a["t"])
                for a, b in zip(series[:-step:step], series[step::step], strict=False)
                if b["t"] > a["t"]
            ]
            cpu_axis.plot(times[step::step][: len(cores)], cores, color=colors[role], lw=1.2)
        rss_axis.plot([], [], color=colors[role], label=role)
    rss_axis.set_ylabel("RSS (MiB)")
    rss_axis.legend(fontsize=7, ncol=3, loc="upper left")
    cpu_axis.set_ylabel("CPU (cores)")
    seconds = report["config"]["seconds"]
    window = max(5.0, seconds / 60)
    edges = [i * window for i in range(int(seconds / window))]
    valid = [o for o in report["outcomes"] if o[1] in ("behaviors", "questions")]
    p50, p99, rate_valid, rate_bad = [], [], [], []
    for start in edges:
        inside = sorted(o[3] for o in valid if start <= o[0] < start + window and o[2] == 200)
        p50.append(inside[len(inside) // 2] if inside else float("nan"))
        p99.append(inside[min(len(inside) - 1, int(0.99 * len(inside)))] if inside else float("nan"))
        rate_valid.append(sum(start <= o[0] < start + window for o in valid) / window)
        rate_bad.append(
            sum(start <= o[0] < start + window for o in report["outcomes"] if o[1] not in ("behaviors", "questions"))
            / window
        )
    centers = [e + window / 2 for e in edges]
    latency_axis.plot(centers, p50, label="valid p50")
    latency_axis.plot(centers, p99, label="valid p99")
    latency_axis.set_ylabel("latency (ms)")
    latency_axis.legend(fontsize=8)
    rate_axis.plot(centers, rate_valid, label="valid req/s")
    rate_axis.plot(centers, rate_bad, label="bad req/s")
    failed = [o[0] for o in report["outcomes"] if o[1] in ("behaviors", "questions") and o[2] != 200]
    if failed:
        rate_axis.plot(failed, [0] * len(failed), "rx", label="failed valid request")
    rate_axis.set_ylabel("requests/s")
    rate_axis.set_xlabel("seconds")
    rate_axis.legend(fontsize=8)
    for axis in (rss_axis, cpu_axis, latency_axis, rate_axis):
        axis.axvspan(0, report["config"]["warmup_s"], color="0.93")
        for event in report["events"]:
            if "killed" in event["event"]:
                axis.axvline(event["t"], color="red", ls="--", lw=1)
    rss_axis.set_title(
        f"soak {seconds:.0f} s: {report['requests']} requests, {report['valid_failed']} valid failed, "
        f"passed={report['passed']} (red: kills; grey: warm-up)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"soak: {report['requests']} requests in {report['config']['seconds']:.0f} s "
        f"({report['valid_requests']} valid, {report['bad_requests']} bad); "
        f"valid failed {report['valid_failed']}, bad with a wrong status {report['bad_with_wrong_status']}",
        "valid latency " + ", ".join(f"{k} {v} ms" for k, v in report["valid_latency_ms"].items()) + "; "
        f"served by {report['served_by']}",
        f"heals: {report['heals']}",
        "processes (RSS MiB after warm-up -> end, growth; fds and threads, with the last third's rise over the middle):",
    ]
    for p in report["processes"]:
        if p["judged"]:
            lines.append(
                f"  {p['role']:<32} {p['rss_mib'][0]:>7.1f} -> {p['rss_mib'][1]:>7.1f} ({p['rss_growth']:+.2%})  "
                f"fds {p['fds'][0]:g}->{p['fds'][1]:g} (trend {p['fds_trend']:+g})  "
                f"threads {p['threads'][0]:g}->{p['threads'][1]:g} (trend {p['threads_trend']:+g})"
            )
        else:
            lines.append(f"  {p['role']:<32} lived {p['from_s']:.0f}-{p['to_s']:.0f} s: too short to judge")
    lines += [f"  [{'ok' if ok else 'FAILED'}] {name}" for name, ok in report["checks"].items()]
    lines.append("PASSED" if report["passed"] else "FAILED")
    return "\n".join(lines)


OUTCOME_COLUMNS = ("t", "kind", "status", "ms", "backend", "case", "ok")
SAMPLE_COLUMNS = ("t", "role", "pid", "rss", "fds", "threads", "cpu_s")


def write(report: dict[str, Any], stem: Path) -> None:
    """``<stem>.json`` (the verdict and its figures), ``<stem>.png``, and every response and every process
    sample as gzipped CSV beside them (``<stem>.responses.csv.gz``, ``<stem>.samples.csv.gz``)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    plot(report, stem.with_suffix(".png"))
    tables = {
        "responses": (OUTCOME_COLUMNS, report["outcomes"]),
        "samples": (SAMPLE_COLUMNS, [[sample[c] for c in SAMPLE_COLUMNS] for sample in report["samples"]]),
    }
    for name, (columns, rows) in tables.items():
        # mtime=0: the same run gives the same bytes.
        path = stem.parent / f"{stem.name}.{name}.csv.gz"
        with (
            gzip.GzipFile(path, "wb", mtime=0) as raw,
            io.TextIOWrapper(raw, encoding="utf-8", newline="") as text,
        ):
            writer = csv.writer(text)
            writer.writerow(columns)
            writer.writerows(rows)
    summary_only = {key: value for key, value in report.items() if key not in ("outcomes", "samples")}
    summary_only["files"] = {name: f"{stem.name}.{name}.csv.gz" for name in tables}
    stem.with_suffix(".json").write_text(json.dumps(summary_only, indent=1) + "\n")


def prepare_repository(model: str, workdir: Path) -> Path:
    """Build ``model`` for cpu (up to date builds are reused) and write both fleets' configs, one torch thread per
    stub: two fleets, the API tier and the load share this machine's cores."""
    from blip_bench.workspace import DEFAULT_WORKSPACE, prepare

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
    args = parser.parse_args(argv)
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
