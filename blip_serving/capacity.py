"""``make capacity`` and ``make cost``: from a measured ``make perf`` knee to an autoscaling target and a price.

- capacity: the per-pod target of a fleet's HorizontalPodAutoscaler is the knee ``make perf`` measured (the highest
  frames/s whose p99 stays under the SLO, one pod being one host) times a stated headroom, so that a pod scales out
  before it leaves the SLO. It is written into the fleet's autoscaling overlay (``overlays/<fleet>-autoscaling``) as
  ``capacity.yaml``, with where it came from,
  only from a measurement of that fleet's target on that fleet's host type: until one exists the overlay carries a placeholder that the
  Kubernetes API refuses, so an unmeasured target cannot be applied by accident.
- cost: per fleet, frames/s per instance at the SLO, the instances ``RATE`` frames/s needs plus one spare, $/h,
  $ per million frames and per million questions, and the saving of each fleet against the others. A fleet without
  a measurement, or a host without a price, says so: nothing is extrapolated.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from blip_contract.records import ConfigFileError, PositiveNumber, Strict, load_file
from blip_contract.version import add_version_option
from blip_serving.perf_summary import PerfSummary

# Defaults relative to the checkout the Makefile runs from; every one is a flag.
OVERLAYS = Path("deploy/kubernetes/overlays")
PRICES = Path("deploy/prices.toml")
RESULTS = Path("benchmarks/results")
DEFAULT_HEADROOM = 0.7  # a pod scales out at 70% of the throughput it sustains within the SLO
# The metric the fleets' HPAs scale on: frames the API tiers' routers sent to the fleet (blip_router_requests_total
# of the fleet's backend, through prometheus-adapter's external rule: deploy/kubernetes/prometheus-adapter). Only
# callers' frames count; every probe (supervisor, kubelet, routers) is left out. Averaged over the fleet's pods.
SCALING_METRIC = "blip_fleet_frames_per_second"
# What an overlay's target says until `make capacity` has a measurement of its hardware: not a quantity, so the API
# server refuses the HPA (and `kubectl apply` fails) rather than scaling on another machine's figure.
UNMEASURED = "UNMEASURED-run-make-perf-and-make-capacity-on-this-hardware"
# The fleets and the host each one runs on; the overlay its HPA target goes to. The fleet's name is its backend's
# name in the API tier's config (deploy/kubernetes/overlays/api/api.toml).
FLEETS = {
    "neuron": {"host": "inf2.xlarge", "overlay": "neuron-inf2-xlarge"},
    "gpu": {"host": "g5.xlarge", "overlay": "gpu-g5-xlarge"},
    "cpu": {"host": "local", "overlay": None},
}


def capacity_file(overlays: Path, fleet: str) -> Path:
    """Where a fleet's HPA target goes: its autoscaling overlay, applied after the perf Job measured the fleet."""
    return overlays / f"{FLEETS[fleet]['overlay']}-autoscaling" / "capacity.yaml"


class CapacityError(ValueError):
    """A perf result without a knee, or an unknown fleet: the message says which."""


@dataclass(frozen=True)
class Measured:
    """One measurement at the knee: what `make perf` wrote. Which fleet it sizes is the caller's to say."""

    source: str
    target: str
    fps: float
    p99_ms: float
    slo_ms: float
    questions_per_frame: int
    layout: str
    instances: int
    host_type: str | None


def read_perf(path: Path) -> Measured:
    try:
        data = PerfSummary.read(path)
    except ConfigFileError as error:
        raise CapacityError(str(error)) from None
    knee = data.knee
    if knee is None:
        raise CapacityError(f"{path}: no point kept p99 under {data.slo_ms} ms, so there is no knee to size from")
    return Measured(
        source=f"{path.name} ({data.machine.cpu}, {data.machine.cores} cores, {data.model})",
        target=data.target,
        fps=knee.throughput,
        p99_ms=knee.p99_ms,
        slo_ms=data.slo_ms,
        questions_per_frame=data.questions_per_frame,
        layout=knee.layout,
        instances=knee.instances,
        host_type=data.host_type,
    )


def per_pod_target(measured: Measured, headroom: float = DEFAULT_HEADROOM) -> float:
    """Inference requests (frames) per second per pod at which the HPA adds pods."""
    if not 0 < headroom <= 1:
        raise CapacityError(f"headroom must be in (0, 1], got {headroom}")
    return round(measured.fps * headroom, 4)


def capacity_patch(fleet: str, measured: Measured | None, headroom: float = DEFAULT_HEADROOM) -> str:
    """The overlay's HPA patch: where the target came from, as comments, then the patch written by pyyaml. Without a
    measurement of the fleet's hardware, the placeholder target."""
    target = f"{per_pod_target(measured, headroom):g}" if measured else UNMEASURED
    patch = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "blip-fleet"},
        "spec": {
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": SCALING_METRIC, "selector": {"matchLabels": {"backend": fleet}}},
                        # AverageValue: the fleet's frames/s divided by its pods. A quantity string, as Kubernetes
                        # writes it.
                        "target": {"type": "AverageValue", "averageValue": target},
                    },
                }
            ]
        },
    }
    if measured is None:
        header = (
            f"# Written by `make capacity`: NOT MEASURED. No `make perf` result of the {fleet} fleet's hardware\n"
            f"# ({FLEETS[fleet]['host']}) exists, so the HPA target is a placeholder the Kubernetes API refuses. Measure the\n"
            f"# deployed fleet with its perf Job (docs/kubernetes.md), then\n"
            f"# make capacity PERF=perf-{fleet}.json (the Job's last log line).\n"
        )
    else:
        header = (
            f"# Written by `make capacity` on {time.strftime('%Y-%m-%d')}: the HPA's per-pod target.\n"
            f"# Knee measured by `make perf`: {measured.fps:g} frames/s per pod, p99 {measured.p99_ms:g} ms under the "
            f"{measured.slo_ms:g} ms\n"
            f"# SLO ({measured.layout} layout, {measured.instances} instance(s)); source {measured.source}.\n"
            f"# Headroom {headroom:g}: target = {measured.fps:g} x {headroom:g} = {target} frames/s per pod.\n"
        )
    return header + yaml.safe_dump(patch, sort_keys=False)


class PriceSource(Strict):
    kind: str = Field(description="What the prices are: market, OS, region, currency, unit.")
    source: str = Field(min_length=1)
    retrieved: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")


class Prices(Strict):
    """``deploy/prices.toml`` whole: where the prices come from and when, and one price per host type."""

    catalog: PriceSource
    prices: dict[str, PositiveNumber] = Field(description="Host type -> price per hour.")


def load_prices(path: Path = PRICES) -> Prices:
    try:
        return load_file(Prices, path)
    except ConfigFileError as error:
        raise CapacityError(str(error)) from None


def fleet_costs(measured: dict[str, Measured | None], prices: Prices, rate: float) -> list[dict[str, Any]]:
    """One row per fleet; fleets without a measurement or a price say so instead of a number."""
    rows = []
    for fleet, spec in FLEETS.items():
        row: dict[str, Any] = {"fleet": fleet, "host": spec["host"]}
        found = measured.get(fleet)
        price = prices.prices.get(spec["host"])
        row["price_per_hour"] = price
        if found is None:
            row["status"] = "not measured"
            rows.append(row)
            continue
        row |= {
            "status": "measured",
            "source": found.source,
            "fps_per_instance": found.fps,
            "p99_ms": found.p99_ms,
            "slo_ms": found.slo_ms,
            "instances_for_rate": math.ceil(rate / found.fps) + 1,  # plus one spare
        }
        if price is None:
            row["status"] = "measured, no price"
        else:
            per_frame = price / (found.fps * 3600)
            row |= {
                "dollars_per_hour": round(row["instances_for_rate"] * price, 4),
                "dollars_per_million_frames": round(per_frame * 1e6, 2),
                "dollars_per_million_questions": round(per_frame * 1e6 / found.questions_per_frame, 2),
            }
        rows.append(row)
    priced = [r for r in rows if "dollars_per_million_frames" in r]
    for row in priced:
        row["saving_vs"] = {
            other["fleet"]: round(1 - row["dollars_per_million_frames"] / other["dollars_per_million_frames"], 3)
            for other in priced
            if other is not row
        }
    return rows


def render_costs(rows: list[dict[str, Any]], prices: Prices, rate: float) -> str:
    catalog = prices.catalog
    lines = [
        f"cost for {rate:g} frames/s; prices: {catalog.kind}, {catalog.source} (retrieved {catalog.retrieved})",
        f"{'fleet':<8}{'host':<14}{'frames/s/inst':>14}{'instances':>10}{'$/h':>9}{'$/M frames':>12}{'$/M questions':>14}",
    ]
    for row in rows:
        if row["status"] == "not measured":
            lines.append(f"{row['fleet']:<8}{row['host']:<14}{'not measured':>14}")
            continue
        head = f"{row['fleet']:<8}{row['host']:<14}{row['fps_per_instance']:>14.3f}{row['instances_for_rate']:>10}"
        if "dollars_per_hour" not in row:
            lines.append(head + f"{'no price for ' + row['host']:>35}")
            continue
        lines.append(
            head
            + f"{row['dollars_per_hour']:>9.3f}{row['dollars_per_million_frames']:>12.2f}"
            + f"{row['dollars_per_million_questions']:>14.2f}"
        )
    for row in rows:
        for other, saving in row.get("saving_vs", {}).items():
            lines.append(f"{row['fleet']} against {other}: {saving:+.0%} per frame")
    return "\n".join(lines)


def _measured_fleets(specs: list[str]) -> dict[str, Measured | None]:
    """``fleet=path`` pairs; a fleet with a missing file is not measured."""
    measured: dict[str, Measured | None] = dict.fromkeys(FLEETS)
    for spec in specs:
        fleet, _, path = spec.partition("=")
        if fleet not in FLEETS:
            raise CapacityError(f"unknown fleet {fleet!r}; expected one of {', '.join(FLEETS)}")
        file = Path(path)
        measured[fleet] = read_perf(file) if file.is_file() else None
    return measured


def overlay_for(measured: Measured, source: Path) -> str:
    """The overlay a measurement may size: the one whose fleet runs the measured target on the measured host type.
    ``CapacityError`` in one line otherwise: a target measured on other hardware is never written."""
    spec = FLEETS.get(measured.target, {})
    overlay = spec.get("overlay")
    if not overlay:
        runs = ", ".join(f for f, s in FLEETS.items() if s["overlay"])
        raise CapacityError(
            f"{source} measured the {measured.target} target, which no overlay runs; a target measured on other "
            f"hardware is never written (overlays for {runs})"
        )
    if measured.host_type is None:
        raise CapacityError(
            f"{source} records no host type (it is older than the field): run make perf again on {spec['host']}"
        )
    if measured.host_type != spec["host"]:
        raise CapacityError(
            f"{source} measured host type {measured.host_type}, but overlays/{overlay} runs {spec['host']}: a "
            f"target measured on other hardware is never written (make perf URL=... HOST_TYPE={spec['host']} on it)"
        )
    return overlay


def main_capacity(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blip-capacity", description=__doc__)
    parser.add_argument("--perf", type=Path, default=RESULTS / "perf-cpu.json", help="a make perf summary JSON")
    parser.add_argument("--headroom", type=float, default=DEFAULT_HEADROOM)
    parser.add_argument("--overlays", type=Path, default=OVERLAYS)
    parser.add_argument(
        "--unmeasured",
        choices=[f for f, s in FLEETS.items() if s["overlay"]],
        action="append",
        help="write this fleet's placeholder target instead (its measurement is gone or was of other hardware)",
    )
    args = add_version_option(parser).parse_args(argv)
    if args.unmeasured:
        for fleet in args.unmeasured:
            path = capacity_file(args.overlays, fleet)
            path.write_text(capacity_patch(fleet, None))
            print(f"wrote {path} (placeholder: not measured)")
        return 0
    try:
        measured = read_perf(args.perf)
        target = per_pod_target(measured, args.headroom)
        overlay_for(measured, args.perf)  # refuses another target or host type
    except (CapacityError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"knee {measured.fps:g} frames/s (p99 {measured.p99_ms:g} ms <= {measured.slo_ms:g} ms, {measured.layout}) "
        f"x headroom {args.headroom:g} = {target:g} frames/s per pod"
    )
    path = capacity_file(args.overlays, measured.target)
    path.write_text(capacity_patch(measured.target, measured, args.headroom))
    print(f"wrote {path}")
    return 0


def main_cost(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blip-cost", description=__doc__)
    parser.add_argument(
        "--perf",
        action="append",
        default=None,
        help="fleet=perf.json (repeatable); default: every fleet's benchmarks/results/perf-<fleet>.json that exists",
    )
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second the fleet must serve")
    parser.add_argument("--prices", type=Path, default=PRICES)
    parser.add_argument("--out", type=Path, default=RESULTS / "cost.json")
    args = add_version_option(parser).parse_args(argv)
    specs = args.perf or [f"{fleet}={RESULTS / f'perf-{fleet}.json'}" for fleet in FLEETS]
    try:
        measured = _measured_fleets(specs)
        prices = load_prices(args.prices)
    except (CapacityError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = fleet_costs(measured, prices, args.rate)
    print(render_costs(rows, prices, args.rate))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"rate": args.rate, "prices": prices.catalog.model_dump(), "fleets": rows}, indent=2) + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("capacity", "cost"):
        print("usage: python -m blip_serving.capacity capacity|cost [options]", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit((main_capacity if command == "capacity" else main_cost)(sys.argv[2:]))
