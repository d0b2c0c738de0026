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
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from blip_contract.env import env_default
from blip_contract.records import load_file, validate_file
from blip_contract.version import add_version_option
from blip_serving.deployment import Deployment
from blip_serving.hosts import Catalog, HostType, ModelFigures
from blip_serving.layouts import DEFAULT_LAYOUT, LAYOUT_NAMES, Context, Option, get_layout, layout_of
from blip_serving.resources import memory_gib, threads_per_instance, usable_cores
from blip_serving.spec import COMPONENT_NAMES, BlipSpec
from blip_serving.targets import Target, get_target

CATALOG = Path(str(resources.files("blip_serving") / "hosts.toml"))  # package data: installed with the package


class PlanError(ValueError):
    """No placement fits: the message names the reason in one line."""


def load_catalog(path: Path = CATALOG) -> Catalog:
    """The catalog, its ``local`` host read from this machine; any unknown key is refused in one line."""
    import tomllib  # Python 3.11+ (the floor); a local import keeps the serving path's imports to what it reads

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise PlanError(f"cannot read {path}: {error}") from None
    if isinstance(data.get("hosts", {}).get("local"), dict):
        data["hosts"]["local"] |= local_resources()
    return validate_file(Catalog, data, path)


def local_resources() -> dict[str, Any]:
    return {"vcpus": usable_cores(), "memory_gib": memory_gib(), "accelerator_memory_gib": 0}


def model_spec(model: ModelFigures) -> BlipSpec:
    """The catalog model's shapes at the build's default buckets: what a default build traces."""
    return BlipSpec.for_sizing(**model.shapes)


def artifact_sizes(spec: BlipSpec, static: bool) -> dict[str, list[dict[str, int]]]:
    """The axis sizes of each component's artifacts (NEFFs): one per shape bucket where every build is static,
    else one of any shape (empty sizes)."""
    return {name: list(spec.components[name].shape_buckets) if static else [{}] for name in COMPONENT_NAMES}


def device_mib(spec: BlipSpec, target: Target, weights_mib: dict[str, float]) -> dict[str, float]:
    """Accelerator memory of each component's artifacts: the weights of every artifact (each NEFF holds its own)
    at the target's storage scale, plus, where shapes are static, every artifact's input and output tensors at its
    bucket. What this cannot count is the target's ``device_memory_note``."""
    mib = {}
    for name, variants in artifact_sizes(spec, target.always_static).items():
        component = spec.components[name]
        io = sum(component.io_bytes(spec.full_sizes(sizes)) for sizes in variants if sizes)
        mib[name] = len(variants) * weights_mib[name] * target.device_weight_scale + io / 2**20
    return mib


class Plan(BaseModel):
    """``artifacts/plan-<target>.json``: written by ``make plan`` (``write_plan``), read by build and serve
    (``read_plan``). The chosen option comes first in ``options``."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="The catalog's host type (HOST_TYPE), or local.")
    host_spec: HostType = Field(description="The catalog's entry for the host, with its source.")
    target: str
    layout: str = Field(description="The chosen layout.")
    deployment: Deployment = Field(description="The chosen deployment; build and serve take it.")
    neuron_visible_cores: dict[str, list[str]] | None = Field(
        description="NEURON_RT_VISIBLE_CORES of every instance of every stub model, where cores are exclusive."
    )
    why: str
    options: list[Option] = Field(description="Every layout weighed, the chosen one first.")
    catalog_retrieved: str = Field(description="When the host catalog's figures were read from their sources.")

    @property
    def chosen(self) -> Option:
        return self.options[0]

    @property
    def alternatives(self) -> list[Option]:
        return self.options[1:]

    def visible_cores(self) -> dict[str, list[str]] | None:
        return self.neuron_visible_cores

    def render(self, core_fps: float | None = None) -> str:
        spec = self.host_spec
        lines = [
            f"host {self.host}: {spec.accelerators}, {spec.accelerator_memory_gib:g} GiB accelerator memory, "
            f"{spec.vcpus} vCPUs, {spec.memory_gib:g} GiB memory (source: {spec.source}; "
            f"catalog {self.catalog_retrieved})",
            f"target {self.target}, layout {self.chosen.layout}",
        ]
        deployment = self.chosen.deployment
        for name in layout_of(deployment).python_models:
            # The rule the stub applies at load, with this host's vCPUs.
            threads = threads_per_instance(deployment.intra_op_threads, deployment.instances_of(name), spec.vcpus)
            lines.append(f"  {name}: {deployment.instances_of(name)} instance(s), {threads} thread(s) each")
        cores = self.visible_cores()
        if cores:
            for name, per_instance in cores.items():
                lines.append(f"  {name}: NEURON_RT_VISIBLE_CORES per instance {per_instance}")
        lines.append("options:")
        for option in (self.chosen, *self.alternatives):
            lines.append("  " + describe(option, spec, core_fps))
        lines.append(f"why: {self.why}")
        note = get_target(self.target).device_memory_note
        if note:
            lines.append(f"accelerator memory: {note}")
        return "\n".join(lines)


def describe(option: Option, host: HostType, core_fps: float | None) -> str:
    if option.refused:
        return f"{option.layout}: refused: {option.refused}"
    fps = option.predicted_relative_fps
    if fps is None:
        predicted = "throughput not predicted (processes share the device): measure with make bench / make perf"
    elif core_fps:
        predicted = f"predicted {fps * core_fps:.1f} frames/s ({fps:.2f} x {core_fps} frames/s of one core)"
    else:
        predicted = f"predicted {fps:.2f} x the frames/s of one core running whole frames"
    unit = "per NeuronCore" if host.neuron_cores else "per device"
    accelerator = (
        f"accelerator {option.accelerator_mib_per_unit:.0f} MiB {unit}"
        if host.accelerator_memory_gib
        else "no accelerator"
    )
    return (
        f"{option.layout}: {option.processes} process(es), {accelerator}, host {option.host_mib:.0f} MiB (estimates); "
        f"{predicted}" + "".join(f"; {note}" for note in option.notes)
    )


def make_plan(host_name: str, layout: str | None = None, catalog: Catalog | None = None) -> Plan:
    catalog = catalog or load_catalog()
    hosts = catalog.hosts
    if host_name not in hosts:
        raise PlanError(f"unknown HOST={host_name!r}; the catalog has {', '.join(hosts)}")
    host = hosts[host_name]
    target = get_target(host.family)()
    model = catalog.model
    cost = {name: model.gmacs_per_frame[name] for name in COMPONENT_NAMES}
    context = Context(
        host_name=host_name,
        host=host,
        weights_on_host=target.weights_on_host,
        slots=target.process_slots(host),
        device_mib=device_mib(model_spec(model), target, model.weights_mib),
        share={name: value / sum(cost.values()) for name, value in cost.items()},
        weights_mib=model.weights_mib,
        per_process_mib=model.stub_overhead_mib + model.runtime_overhead_mib[target.name],
        runtime_mib=model.runtime_overhead_mib[target.name],
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
    return Plan(
        host=host_name,
        host_spec=host,
        target=target.name,
        layout=chosen.layout,
        deployment=chosen.deployment,
        neuron_visible_cores=target.visible_cores(chosen.deployment) if context.slots else None,
        why=why,
        options=[chosen, *alternatives],
        catalog_retrieved=catalog.catalog.retrieved,
    )


def plan_path(artifacts: Path, target: str) -> Path:
    return artifacts / f"plan-{target}.json"


def read_plan(artifacts: Path, target: str) -> Plan | None:
    """The plan ``make plan`` wrote for ``target``, if any."""
    path = plan_path(artifacts, target)
    return load_file(Plan, path) if path.is_file() else None


def write_plan(plan: Plan, artifacts: Path) -> Path:
    path = plan_path(artifacts, plan.target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plan.model_dump_json(indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="blip-plan", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--host-type", "--host", default=env_default("HOST_TYPE", "local"), help="a host of hosts.toml")
    parser.add_argument("--layout", choices=LAYOUT_NAMES, default=env_default("LAYOUT"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument(
        "--core-fps", type=float, default=None, help="measured frames/s of one core, to scale the prediction"
    )
    args = add_version_option(parser).parse_args(argv)
    try:
        plan = make_plan(args.host_type, args.layout)
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(plan.render(args.core_fps))
    path = write_plan(plan, args.artifacts)
    print(f"wrote {path}: make build-artifacts TARGET={plan.target} and make serve TARGET={plan.target} use it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
