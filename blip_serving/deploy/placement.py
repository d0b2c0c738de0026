"""The placement plan: which layout, how many instances, which NeuronCores and threads, for one host type.

``make plan HOST=inf2.xlarge`` reads the host catalog (``hosts.toml``, with sources), weighs the two layouts for the
host's target and writes ``artifacts/plan-<target>.json``, which ``make build-artifacts`` and ``make serve`` read for
that target (explicit LAYOUT, INSTANCES, ... still win).

- Where each process owns its accelerator share exclusively (Neuron: a NeuronCore serves one process), the plan
  predicts throughput from each component's cost: colocated runs whole frames on every core; the ensemble needs a
  core per component at least, and its slowest stage bounds it. Figures are relative to one core running whole
  frames, because no Inferentia2 throughput was measured here: ``--core-fps`` scales them.
- Where processes share the device (one GPU, the CPU), the ensemble fits and stays the default; the plan says what
  colocated would save.
- An impossible plan is refused with one line naming the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from blip_serving.deploy.layouts import DEFAULT_LAYOUT, LAYOUT_NAMES, get_layout
from blip_serving.deploy.triton_config import Deployment
from blip_serving.spec import (
    COMPONENT_NAMES,
    DEFAULT_IMAGE_BATCH_BUCKETS,
    DEFAULT_QUESTION_BATCH_BUCKETS,
    DEFAULT_QUESTION_BUCKETS,
    DEFAULT_SHORT_DECODE_LENGTHS,
    ENSEMBLE_NAME,
    IMAGE_ENCODER,
    TEXT_DECODER,
    TEXT_ENCODER,
)
from blip_serving.targets import get_target

CATALOG = Path(__file__).with_name("hosts.toml")
DEFAULT_ANSWER_BUFFERS = len(DEFAULT_SHORT_DECODE_LENGTHS) + 1  # 1, 4 and the full answer length


class PlanError(ValueError):
    """No placement fits: the message names the reason in one line."""


def load_catalog(path: Path = CATALOG) -> dict[str, Any]:
    import tomllib  # Python 3.11+: make plan runs on the build host; serving (NGC's 3.10) only reads the JSON plan

    data = tomllib.loads(path.read_text())
    data["hosts"]["local"] |= local_resources()
    return data


def local_resources() -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory_kib = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return {"vcpus": cores, "memory_gib": round(memory_kib / 2**20, 1), "accelerator_memory_gib": 0}


def artifacts_per_component(static: bool) -> dict[str, int]:
    """Artifacts (NEFFs) each component has: one per shape bucket where every build is static, else one."""
    if not static:
        return dict.fromkeys(COMPONENT_NAMES, 1)
    questions = len(DEFAULT_QUESTION_BATCH_BUCKETS) * len(DEFAULT_QUESTION_BUCKETS)
    return {
        IMAGE_ENCODER: len(DEFAULT_IMAGE_BATCH_BUCKETS),
        # The text encoder takes every frame of an execute at once: one artifact per frame bucket too.
        TEXT_ENCODER: questions * len(DEFAULT_IMAGE_BATCH_BUCKETS),
        TEXT_DECODER: questions * DEFAULT_ANSWER_BUFFERS,
    }


@dataclass
class Option:
    """One way to lay the model out on the host, with what it needs and what it is predicted to give."""

    layout: str
    deployment: Deployment
    processes: int
    accelerator_mib_per_unit: float  # per NeuronCore where cores are exclusive, else per device
    host_mib: float
    predicted_relative_fps: float | None
    notes: list[str] = field(default_factory=list)
    refused: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # the deployment too: asdict recurses


@dataclass
class Plan:
    host: str
    host_spec: dict[str, Any]
    target: str
    chosen: Option
    alternatives: list[Option]
    why: str
    catalog_retrieved: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "host_spec": self.host_spec,
            "target": self.target,
            "layout": self.chosen.layout,
            "deployment": asdict(self.chosen.deployment),
            "neuron_visible_cores": self.visible_cores(),
            "why": self.why,
            "options": [self.chosen.to_dict(), *(o.to_dict() for o in self.alternatives)],
            "catalog_retrieved": self.catalog_retrieved,
        }

    def visible_cores(self) -> dict[str, list[str]] | None:
        """``NEURON_RT_VISIBLE_CORES`` of every instance of every stub model, where cores are exclusive."""
        if not self.host_spec.get("neuron_cores"):
            return None
        from blip_serving.targets.neuron import neuron_visible_cores

        deployment = self.chosen.deployment
        return {
            name: [
                neuron_visible_cores(first, last, deployment.instances_of(name), i)
                for i in range(deployment.instances_of(name))
            ]
            for name, (first, last) in deployment.neuron_core_blocks().items()
        }

    def render(self, core_fps: float | None = None) -> str:
        spec = self.host_spec
        lines = [
            f"host {self.host}: {spec.get('neuron_cores') or spec.get('gpus') or 0} "
            f"{'NeuronCores' if spec.get('neuron_cores') else 'GPU(s)' if spec.get('gpus') else 'accelerators'}, "
            f"{spec.get('accelerator_memory_gib', 0)} GiB accelerator memory, {spec['vcpus']} vCPUs, "
            f"{spec['memory_gib']} GiB memory (source: {spec['source']}; catalog {self.catalog_retrieved})",
            f"target {self.target}, layout {self.chosen.layout}",
        ]
        deployment = self.chosen.deployment
        for name in deployment.python_models:
            # intra_op_threads 0: each instance takes the host's cores over its model's instances, at load.
            threads = max(1, spec["vcpus"] // deployment.instances_of(name))
            lines.append(f"  {name}: {deployment.instances_of(name)} instance(s), {threads} thread(s) each")
        cores = self.visible_cores()
        if cores:
            for name, per_instance in cores.items():
                lines.append(f"  {name}: NEURON_RT_VISIBLE_CORES per instance {per_instance}")
        lines.append("options:")
        for option in (self.chosen, *self.alternatives):
            lines.append("  " + describe(option, spec, core_fps))
        lines.append(f"why: {self.why}")
        return "\n".join(lines)


def describe(option: Option, host: dict[str, Any], core_fps: float | None) -> str:
    if option.refused:
        return f"{option.layout}: refused: {option.refused}"
    fps = option.predicted_relative_fps
    if fps is None:
        predicted = "throughput not predicted (processes share the device): measure with make bench / make perf"
    elif core_fps:
        predicted = f"predicted {fps * core_fps:.1f} frames/s ({fps:.2f} x {core_fps} frames/s of one core)"
    else:
        predicted = f"predicted {fps:.2f} x the frames/s of one core running whole frames"
    unit = "per NeuronCore" if host.get("neuron_cores") else "per device"
    accelerator = (
        f"accelerator {option.accelerator_mib_per_unit:.0f} MiB {unit}"
        if host.get("accelerator_memory_gib")
        else "no accelerator"
    )
    return (
        f"{option.layout}: {option.processes} process(es), {accelerator}, host {option.host_mib:.0f} MiB (estimates); "
        f"{predicted}" + "".join(f"; {note}" for note in option.notes)
    )


def balanced_instances(slots: int, cost: dict[str, float]) -> dict[str, int]:
    """Cores per component, at least one each, added one at a time to the stage that bounds throughput."""
    counts = dict.fromkeys(cost, 1)
    for _ in range(slots - len(cost)):
        slowest = min(counts, key=lambda name: counts[name] / cost[name])
        counts[slowest] += 1
    return counts


@dataclass(frozen=True)
class Context:
    """What a layout needs to place itself on a host: the host, its target, and the model's costs."""

    host_name: str
    host: dict[str, Any]
    target: Any
    slots: int | None  # processes the accelerators serve exclusively (NeuronCores); None: a shared device
    device_mib: dict[str, float]  # accelerator memory each component's artifacts take
    share: dict[str, float]  # each component's part of a frame's multiply-adds
    weights_mib: dict[str, float]
    per_process_mib: float
    runtime_mib: float

    @property
    def unit_mib(self) -> float:
        """Accelerator memory per exclusive unit (NeuronCore), else per device."""
        total = self.host.get("accelerator_memory_gib", 0) * 1024
        return total / (self.slots or int(self.host.get("gpus") or 1))

    def option(self, layout: str, counts: dict[str, int], fps: float | None, unit_need: float) -> Option:
        """An option running ``counts`` instances of each stub model, checked against the host's memory."""
        processes = sum(counts.values())
        components = {c: counts.get(c, counts.get(ENSEMBLE_NAME, 0)) for c in COMPONENT_NAMES}
        host_need = processes * self.per_process_mib + (
            sum(self.weights_mib[c] * n for c, n in components.items()) if self.target.weights_on_host else 0.0
        )
        models = get_layout(layout).python_models
        uniform = {counts[name] for name in models}
        deployment = Deployment(
            layout=layout,
            instances=max(uniform) if len(uniform) == 1 else 1,
            model_instances=() if len(uniform) == 1 else tuple((n, counts[n]) for n in models),
        )
        result = Option(layout, deployment, processes, unit_need, host_need, fps)
        if self.unit_mib and unit_need > self.unit_mib:
            result.refused = (
                f"needs {unit_need:.0f} MiB of accelerator memory per unit, the host has {self.unit_mib:.0f}"
            )
        elif host_need > self.host["memory_gib"] * 1024:
            result.refused = (
                f"needs {host_need:.0f} MiB of host memory, the host has {self.host['memory_gib'] * 1024:.0f}"
            )
        return result


def make_plan(host_name: str, layout: str | None = None, catalog: dict[str, Any] | None = None) -> Plan:
    catalog = catalog or load_catalog()
    hosts = catalog["hosts"]
    if host_name not in hosts:
        raise PlanError(f"unknown HOST={host_name!r}; the catalog has {', '.join(hosts)}")
    host = hosts[host_name]
    target = get_target(host["family"])()
    model = catalog["model"]
    artifacts = artifacts_per_component(target.always_static)
    cost = {name: model["gmacs_per_frame"][name] for name in COMPONENT_NAMES}
    context = Context(
        host_name=host_name,
        host=host,
        target=target,
        slots=target.process_slots(host),
        device_mib={n: artifacts[n] * model["weights_mib"][n] * target.device_weight_scale for n in COMPONENT_NAMES},
        share={name: value / sum(cost.values()) for name, value in cost.items()},
        weights_mib=model["weights_mib"],
        per_process_mib=model["stub_overhead_mib"] + model["runtime_overhead_mib"][target.name],
        runtime_mib=model["runtime_overhead_mib"][target.name],
    )
    options = {name: get_layout(name).placement(context) for name in LAYOUT_NAMES}
    if layout is not None:
        chosen = options[get_layout(layout).name]
        if chosen.refused:
            raise PlanError(f"LAYOUT={layout} on {host_name}: {chosen.refused}")
        why = f"LAYOUT={layout} asked for, and it fits"
    else:
        feasible = [o for o in options.values() if not o.refused]
        if not feasible:
            raise PlanError(
                f"nothing fits on {host_name}: " + "; ".join(f"{o.layout}: {o.refused}" for o in options.values())
            )
        if context.slots:
            # Exclusive cores: the layout predicted to serve more frames; the design's default on a tie.
            chosen = max(feasible, key=lambda o: (o.predicted_relative_fps or 0.0, o.layout == DEFAULT_LAYOUT))
            why = (
                f"a NeuronCore serves one process: on {context.slots} cores the {chosen.layout} layout is predicted at "
                f"{chosen.predicted_relative_fps:.2f}x one core's frames/s"
                + "".join(
                    f"; {o.layout}: {o.refused}" if o.refused else f"; {o.layout}: {o.predicted_relative_fps:.2f}x"
                    for o in options.values()
                    if o is not chosen
                )
            )
        else:
            chosen = options[DEFAULT_LAYOUT] if not options[DEFAULT_LAYOUT].refused else feasible[0]
            why = f"processes share the device and the {chosen.layout} layout fits (the design's default where it fits)"
    alternatives = [o for o in options.values() if o is not chosen]
    return Plan(host_name, host, target.name, chosen, alternatives, why, catalog["catalog"]["retrieved"])


def plan_path(artifacts: Path, target: str) -> Path:
    return artifacts / f"plan-{target}.json"


def read_plan(artifacts: Path, target: str) -> dict[str, Any] | None:
    """The plan ``make plan`` wrote for ``target``, if any."""
    path = plan_path(artifacts, target)
    return json.loads(path.read_text()) if path.is_file() else None


def deployment_from_plan(plan: dict[str, Any]) -> Deployment:
    data = dict(plan["deployment"])
    data["model_instances"] = tuple(tuple(pair) for pair in data.get("model_instances", ()))
    return Deployment(**data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="blip-plan", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--host", default=os.environ.get("HOST_TYPE") or "local", help="a host of hosts.toml")
    parser.add_argument("--layout", choices=LAYOUT_NAMES, default=os.environ.get("LAYOUT") or None)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument(
        "--core-fps", type=float, default=None, help="measured frames/s of one core, to scale the prediction"
    )
    args = parser.parse_args(argv)
    try:
        plan = make_plan(args.host, args.layout)
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(plan.render(args.core_fps))
    path = plan_path(args.artifacts, plan.target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
    print(f"wrote {path}: make build-artifacts TARGET={plan.target} and make serve TARGET={plan.target} use it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
