"""The placement plan: a layout and instances per host type, refused in one line where it cannot fit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from blip_serving.deploy.placement import PlanError, balanced_instances, deployment_from_plan, load_catalog, make_plan
from tests.conftest import ROOT


def test_inf2_xlarge_runs_two_colocated_instances_on_cores_0_and_1() -> None:
    plan = make_plan("inf2.xlarge")
    assert plan.target == "neuron" and plan.chosen.layout == "colocated"
    assert plan.chosen.deployment.instances == 2 and plan.chosen.deployment.neuron_cores_needed == 2
    assert plan.visible_cores() == {"blip_vqa": ["0", "1"]}
    # Every core holds all three components' NEFFs (3 + 2 + 6 buckets), within its half of the chip's 32 GiB.
    assert 2000 < plan.chosen.accelerator_mib_per_unit < 16 * 1024
    (ensemble,) = plan.alternatives
    assert "needs at least 3 NeuronCores" in ensemble.refused and "inf2.xlarge has 2" in ensemble.refused


def test_an_impossible_layout_is_refused_in_one_line() -> None:
    with pytest.raises(PlanError, match=r"LAYOUT=ensemble on inf2.xlarge: needs at least 3 NeuronCores"):
        make_plan("inf2.xlarge", layout="ensemble")
    result = subprocess.run(
        [sys.executable, "-m", "blip_serving.deploy.placement", "--host", "inf2.xlarge", "--layout", "ensemble"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    with pytest.raises(PlanError, match=r"unknown HOST='p5\.48xlarge'"):
        make_plan("p5.48xlarge")


def test_larger_neuron_hosts_weigh_both_layouts_by_each_components_cost() -> None:
    plan = make_plan("inf2.24xlarge")
    options = {o.layout: o for o in (plan.chosen, *plan.alternatives)}
    # 12 cores: the ensemble balances its stages (image encoder ~79% of the work), the slowest stage bounds it.
    assert options["ensemble"].notes and "'image_encoder': 9" in options["ensemble"].notes[0]
    assert options["colocated"].predicted_relative_fps == 12.0
    assert 10 < options["ensemble"].predicted_relative_fps < 12
    assert plan.chosen.layout == "colocated" and "ensemble: 10.44x" in plan.why
    assert balanced_instances(4, {"a": 0.8, "b": 0.15, "c": 0.05}) == {"a": 2, "b": 1, "c": 1}


def test_gpu_hosts_keep_the_ensemble_and_say_what_colocated_saves() -> None:
    plan = make_plan("g5.xlarge")
    assert plan.target == "gpu" and plan.chosen.layout == "ensemble" and plan.visible_cores() is None
    (colocated,) = plan.alternatives
    assert "CUDA context" in colocated.notes[0]
    assert colocated.accelerator_mib_per_unit < plan.chosen.accelerator_mib_per_unit
    assert make_plan("g5.xlarge", layout="colocated").chosen.layout == "colocated"


def test_every_catalog_host_cites_its_source_and_plans() -> None:
    catalog = load_catalog()
    for name, host in catalog["hosts"].items():
        assert host["source"] and host["vcpus"] >= 1 and host["memory_gib"] > 0, name
        make_plan(name, catalog=catalog)


def test_make_plan_writes_what_build_and_serve_read(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "blip_serving.deploy.placement", "--host", "inf2.xlarge", "--artifacts", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "NEURON_RT_VISIBLE_CORES per instance ['0', '1']" in result.stdout
    plan = json.loads((tmp_path / "plan-neuron.json").read_text())
    deployment = deployment_from_plan(plan)
    assert plan["layout"] == deployment.layout == "colocated" and deployment.neuron_core_blocks() == {
        "blip_vqa": (0, 1)
    }
