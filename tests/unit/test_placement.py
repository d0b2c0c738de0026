"""The placement plan: a layout and instances per host type, refused in one line where it cannot fit."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blip_contract.records import ConfigFileError
from blip_serving.hosts import HostType
from blip_serving.layouts import balanced_instances
from blip_serving.placement import (
    CATALOG,
    Plan,
    PlanError,
    artifact_sizes,
    describe,
    device_mib,
    load_catalog,
    local_resources,
    main,
    make_plan,
    model_spec,
    read_plan,
    write_plan,
)
from blip_serving.targets import get_target
from blip_serving.targets.neuron import neuron_core_blocks, neuron_cores_needed
from tests.conftest import ROOT


def test_inf2_xlarge_runs_two_colocated_instances_on_cores_0_and_1() -> None:
    plan = make_plan("inf2.xlarge")
    assert plan.target == "neuron" and plan.chosen.layout == "colocated"
    assert plan.chosen.deployment.instances == 2 and neuron_cores_needed(plan.chosen.deployment) == 2
    assert plan.visible_cores() == {"blip_vqa": ["0", "1"]}
    # Every core holds all three components' NEFFs (3 + 12 + 12 buckets), within its half of the chip's 32 GiB.
    assert 2000 < plan.chosen.accelerator_mib_per_unit < 16 * 1024
    (ensemble,) = plan.alternatives
    assert "needs at least 3 NeuronCores" in ensemble.refused and "inf2.xlarge has 2" in ensemble.refused


def test_an_impossible_layout_is_refused_in_one_line() -> None:
    with pytest.raises(PlanError, match=r"LAYOUT=ensemble on inf2.xlarge: needs at least 3 NeuronCores"):
        make_plan("inf2.xlarge", layout="ensemble")
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


def test_every_catalog_host_cites_its_source_and_gets_a_plan_that_fits_it() -> None:
    """The chosen option's processes, cores and memory fit the host it is for; each alternative says why not."""
    catalog = load_catalog()
    for name, host in catalog.hosts.items():
        plan = make_plan(name, catalog=catalog)
        chosen, deployment = plan.chosen, plan.chosen.deployment
        assert host.source and plan.target == host.family and plan.host == name, name
        assert chosen.refused is None and chosen.layout in plan.why and deployment.instances >= 1, name
        assert {option.layout for option in [chosen, *plan.alternatives]} == {"ensemble", "colocated"}, name
        assert all(option.refused or option.notes or option is chosen for option in plan.alternatives), name
        if host.family == "cpu":
            continue
        assert host.vcpus >= 1 and chosen.host_mib <= host.memory_gib * 1024, name
        if host.family == "neuron":
            cores = host.neuron_cores
            assert neuron_cores_needed(deployment) == cores, f"{name}: every NeuronCore serves"
            assert chosen.processes == cores and plan.visible_cores() == {"blip_vqa": [str(c) for c in range(cores)]}
            assert chosen.accelerator_mib_per_unit <= host.accelerator_memory_gib * 1024 / cores, name
            assert chosen.predicted_relative_fps == float(cores), name
        else:
            assert chosen.layout == "ensemble" and plan.visible_cores() is None, name
            assert chosen.accelerator_mib_per_unit <= host.accelerator_memory_gib * 1024, name


def test_make_plan_writes_what_build_and_serve_read(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "blip_serving.placement", "--host-type", "inf2.xlarge", "--artifacts", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "NEURON_RT_VISIBLE_CORES per instance ['0', '1']" in result.stdout
    plan = read_plan(tmp_path, "neuron")
    deployment = plan.deployment
    assert plan.layout == deployment.layout == "colocated" and neuron_core_blocks(deployment) == {"blip_vqa": (0, 1)}


INF2_24XLARGE = """\
host inf2.24xlarge: 12 NeuronCores, 192 GiB accelerator memory, 96 vCPUs, 384 GiB memory (source: https://aws.amazon.com/ec2/instance-types/inf2/; catalog 2026-11-26)
target neuron, layout colocated
  blip_vqa: 12 instance(s), 8 thread(s) each
  blip_vqa: NEURON_RT_VISIBLE_CORES per instance ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11']
options:
  colocated: 12 process(es), accelerator 6944 MiB per NeuronCore, host 8880 MiB (estimates); predicted 600.0 frames/s (12.00 x 50.0 frames/s of one core); 12 instance(s), one NeuronCore each, every core holding all three NEFF sets
  ensemble: 12 process(es), accelerator 3242 MiB per NeuronCore, host 8880 MiB (estimates); predicted 522.0 frames/s (10.44 x 50.0 frames/s of one core); cores by stage {'image_encoder': 9, 'text_encoder': 2, 'text_decoder': 1} (image encoder 79% of a frame's work)
why: a NeuronCore serves one process: on 12 cores the colocated layout is predicted at 12.00x one core's frames/s; ensemble: 10.44x
"""

G5_XLARGE_OPTIONS = [
    "  ensemble: 3 process(es), accelerator 2880 MiB per device, host 2220 MiB (estimates); throughput not predicted "
    "(processes share the device): measure with make bench / make perf",
    "  colocated: 1 process(es), accelerator 1880 MiB per device, host 740 MiB (estimates); throughput not predicted "
    "(processes share the device): measure with make bench / make perf; one process instead of three: one runtime "
    "context (on gpu a CUDA context) and one copy of the Python and torch overhead instead of three, no competing "
    "OpenMP teams",
]


def test_the_plan_report_says_what_runs_where_and_why(tmp_path, capsys) -> None:
    """What ``make plan`` prints, in full for one Neuron host; the plan file it writes is what build and serve read."""
    assert main(["--host-type", "inf2.24xlarge", "--core-fps", "50", "--artifacts", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(INF2_24XLARGE)
    assert "accelerator memory: the estimate counts each NEFF's weights, assumed stored at fp16" in printed
    assert "not counted: unknown until measured with neuron-top" in printed
    assert printed.endswith(
        f"wrote {tmp_path / 'plan-neuron.json'}: make build-artifacts TARGET=neuron and make serve TARGET=neuron use it\n"
    )
    plan = make_plan("inf2.24xlarge")
    written = read_plan(tmp_path, "neuron")
    assert written == plan and read_plan(tmp_path, "gpu") is None
    raw = json.loads((tmp_path / "plan-neuron.json").read_text())
    assert raw["layout"] == "colocated" and raw["neuron_visible_cores"] == plan.visible_cores()
    assert [o["layout"] for o in raw["options"]] == ["colocated", "ensemble"] and raw["why"] == plan.why
    assert raw["host"] == "inf2.24xlarge" and raw["host_spec"]["neuron_cores"] == 12
    assert raw["target"] == "neuron" and raw["options"][1]["deployment"]["model_instances"] == [
        ["image_encoder", 9],
        ["text_encoder", 2],
        ["text_decoder", 1],
    ]
    assert raw["catalog_retrieved"] == "2026-11-26" and raw["options"][0]["deployment"] == raw["deployment"]
    assert written.deployment == plan.chosen.deployment


def test_a_gpu_plan_report_does_not_predict_what_it_cannot(capsys, tmp_path) -> None:
    assert main(["--host-type", "g5.xlarge", "--artifacts", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("host g5.xlarge: 1 GPU(s), 24 GiB accelerator memory, 4 vCPUs, 16 GiB memory")
    assert lines[2:5] == [
        f"  {name}: 1 instance(s), 4 thread(s) each" for name in ("image_encoder", "text_encoder", "text_decoder")
    ]
    assert lines[5:8] == ["options:", *G5_XLARGE_OPTIONS]
    assert not any(line.startswith("accelerator memory:") for line in lines), "only Neuron's estimate leaves things out"
    assert read_plan(tmp_path, "gpu").neuron_visible_cores is None
    bare = HostType(family="cpu", vcpus=1, memory_gib=1, source="test")
    refused = describe(make_plan("inf2.xlarge").alternatives[0], bare, None)
    assert refused.startswith("ensemble: refused: needs at least 3 NeuronCores")
    colocated = make_plan("inf2.xlarge").chosen
    assert "predicted 2.00 x the frames/s of one core running whole frames" in describe(
        colocated, bare.model_copy(update={"neuron_cores": 2}), None
    )
    assert "no accelerator" in describe(colocated, bare, None)


def test_the_local_host_is_this_machine(capsys, tmp_path) -> None:
    assert main(["--host-type", "local", "--artifacts", str(tmp_path)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    cores = len(os.sched_getaffinity(0))
    assert first.startswith(f"host local: 0 accelerators, 0 GiB accelerator memory, {cores} vCPUs, ")
    assert read_plan(tmp_path, "cpu").host_spec.vcpus == cores


def test_an_unknown_host_or_impossible_layout_is_one_line_on_stderr(capsys, tmp_path) -> None:
    assert main(["--host-type", "inf2.xlarge", "--layout", "ensemble", "--artifacts", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert (
        error.startswith("error: LAYOUT=ensemble on inf2.xlarge: needs at least 3 NeuronCores")
        and error.count("\n") == 1
    )
    assert main(["--host-type", "p5.48xlarge", "--artifacts", str(tmp_path)]) == 2
    assert "unknown HOST='p5.48xlarge'" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_each_option_counts_processes_and_host_memory() -> None:
    """Per process runtime plus, where weights live on the host (cpu), each instance's weights."""
    local = {o.layout: o for o in (lambda p: [p.chosen, *p.alternatives])(make_plan("local"))}
    assert (local["ensemble"].processes, local["ensemble"].host_mib) == (3, 2099.5)
    assert (local["colocated"].processes, local["colocated"].host_mib) == (1, 1619.5)
    inf2 = make_plan("inf2.24xlarge")
    (ensemble,) = inf2.alternatives
    assert (ensemble.processes, ensemble.host_mib, inf2.chosen.host_mib) == (12, 8880.0, 8880.0), "weights on device"
    assert ensemble.deployment.instances == 1 and ensemble.deployment.model_instances == (
        ("image_encoder", 9),
        ("text_encoder", 2),
        ("text_decoder", 1),
    )
    assert inf2.chosen.deployment.instances == 12 and inf2.chosen.deployment.model_instances == ()


def test_host_memory_is_enough_at_exactly_what_the_option_needs() -> None:
    catalog = copy.deepcopy(load_catalog())
    catalog.hosts["exact"] = catalog.hosts["inf2.xlarge"].model_copy(update={"memory_gib": 1480 / 1024})
    catalog.hosts["short"] = catalog.hosts["inf2.xlarge"].model_copy(update={"memory_gib": 1479 / 1024})
    assert make_plan("exact", catalog=catalog).chosen.host_mib == 1480.0
    with pytest.raises(
        PlanError, match=r"^nothing fits on short: .*colocated: needs 1480 MiB of host memory, the host has 1479$"
    ):
        make_plan("short", catalog=catalog)
    # Accelerator memory too: a core with exactly what colocated needs fits (powers of two keep the division exact).
    need = make_plan("inf2.xlarge").chosen.accelerator_mib_per_unit
    catalog.hosts["exact-chip"] = catalog.hosts["inf2.xlarge"].model_copy(
        update={"accelerator_memory_gib": need * 2 / 1024}
    )
    assert make_plan("exact-chip", catalog=catalog).chosen.layout == "colocated"
    catalog.hosts["small-chip"] = catalog.hosts["inf2.xlarge"].model_copy(update={"accelerator_memory_gib": 12})
    with pytest.raises(
        PlanError, match=r"colocated: needs 6944 MiB of accelerator memory per unit, the host has 6144$"
    ):
        make_plan("small-chip", catalog=catalog)


def test_the_plan_counts_the_artifacts_a_static_build_makes(static_build) -> None:
    from blip_serving.manifest import read_manifest

    manifest = read_manifest(static_build.target_dir())
    built = {name: [sizes for sizes, _ in manifest.artifact_files(name)] for name in manifest.record.components}
    assert artifact_sizes(manifest.spec, static=True) == built
    assert {name: len(sizes) for name, sizes in built.items()} == {
        "image_encoder": 3,
        "text_encoder": 12,
        "text_decoder": 12,
    }
    assert artifact_sizes(manifest.spec, static=False) == {name: [{}] for name in built}
    # The catalog's blip-vqa-base shapes make as many artifacts as a default build of any checkpoint.
    planned = artifact_sizes(model_spec(load_catalog().model), static=True)
    assert {name: len(sizes) for name, sizes in planned.items()} == {name: len(sizes) for name, sizes in built.items()}


def test_the_neuron_memory_estimate_counts_every_neffs_weights_and_io_tensors() -> None:
    model = load_catalog().model
    estimate = device_mib(model_spec(model), get_target("neuron")(), model.weights_mib)
    # Image encoder: 3 NEFFs (1, 4, 8 frames) of fp16 weights; each takes uint8 384x384x3 pixels and returns fp32
    # 577x768 embeddings per frame: 13 frames of I/O in all. The text models: 12 NEFFs each (2 question-batch x 2
    # question-length buckets x 3 frame or answer-length buckets).
    io = 13 * (384 * 384 * 3 + 577 * 768 * 4) / 2**20
    assert estimate["image_encoder"] == pytest.approx(3 * 328.7 * 0.5 + io)
    assert io == pytest.approx(27.46, abs=0.01)
    # The text models' I/O is counted too: more than their weights alone.
    assert estimate["text_encoder"] > 12 * 524.2 * 0.5 and estimate["text_decoder"] > 12 * 526.6 * 0.5
    # Weights on the host, shapes not static: weights only, once.
    cpu = device_mib(model_spec(model), get_target("cpu")(), model.weights_mib)
    assert cpu == model.weights_mib


def test_the_local_host_reads_this_machines_cores_and_memory() -> None:
    memory_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    assert local_resources() == {
        "vcpus": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kib / 2**20, 1),
        "accelerator_memory_gib": 0,
    }


def test_make_plan_defaults_come_from_host_type_and_layout(tmp_path, monkeypatch, capsys) -> None:
    """``make plan`` passes HOST_TYPE; the fleet images set BLIP_HOST_TYPE and BLIP_LAYOUT; artifacts/ is where build and serve look."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BLIP_HOST_TYPE", "g5.xlarge")
    monkeypatch.setenv("BLIP_LAYOUT", "colocated")
    assert main([]) == 0
    text = (tmp_path / "artifacts" / "plan-gpu.json").read_text()
    assert text.startswith('{\n  "host": "g5.xlarge",\n  "host_spec": {\n') and text.endswith("}\n")
    assert json.loads(text)["layout"] == "colocated"
    monkeypatch.delenv("BLIP_HOST_TYPE")
    monkeypatch.delenv("BLIP_LAYOUT")
    assert main(["--artifacts", str(tmp_path / "deep" / "er")]) == 0
    assert read_plan(tmp_path / "deep" / "er", "cpu").host == "local"
    assert "target cpu, layout ensemble" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--layout", "sideways"])


def test_an_ensemble_plan_reports_each_components_instances_threads_and_cores(capsys) -> None:
    lines = make_plan("inf2.24xlarge", layout="ensemble").render().splitlines()
    assert lines[1:9] == [
        "target neuron, layout ensemble",
        "  image_encoder: 9 instance(s), 10 thread(s) each",
        "  text_encoder: 2 instance(s), 48 thread(s) each",
        "  text_decoder: 1 instance(s), 96 thread(s) each",
        "  image_encoder: NEURON_RT_VISIBLE_CORES per instance ['0', '1', '2', '3', '4', '5', '6', '7', '8']",
        "  text_encoder: NEURON_RT_VISIBLE_CORES per instance ['9', '10']",
        "  text_decoder: NEURON_RT_VISIBLE_CORES per instance ['11']",
        "options:",
    ]
    catalog = copy.deepcopy(load_catalog())
    catalog.hosts["few-cpus"] = catalog.hosts["inf2.xlarge"].model_copy(update={"vcpus": 1})
    assert "  blip_vqa: 2 instance(s), 1 thread(s) each" in make_plan("few-cpus", catalog=catalog).render()


def test_without_an_affinity_call_the_local_host_counts_cpus(monkeypatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert local_resources()["vcpus"] == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert local_resources()["vcpus"] == 1


def test_a_gpu_whose_memory_cannot_hold_the_ensemble_gets_the_colocated_layout() -> None:
    catalog = copy.deepcopy(load_catalog())
    catalog.hosts["small-gpu"] = catalog.hosts["g5.xlarge"].model_copy(update={"accelerator_memory_gib": 2})
    plan = make_plan("small-gpu", catalog=catalog)
    (ensemble,) = plan.alternatives
    assert plan.chosen.layout == "colocated" and ensemble.refused.startswith("needs 2880 MiB of accelerator memory")


def test_a_plan_with_per_component_instances_survives_its_file() -> None:
    plan = make_plan("inf2.24xlarge", layout="ensemble")
    read_back = Plan.model_validate_json(plan.model_dump_json()).deployment
    assert read_back == plan.chosen.deployment and read_back.instances_of("image_encoder") == 9
    older = make_plan("inf2.xlarge").model_dump(mode="json")
    del older["deployment"]["model_instances"]  # plans written before per-component counts existed
    assert Plan.model_validate(older).deployment == make_plan("inf2.xlarge").chosen.deployment


def test_an_unknown_key_in_the_host_catalog_is_refused_with_the_nearest_name(tmp_path) -> None:
    planted = tmp_path / "hosts.toml"
    planted.write_text(CATALOG.read_text().replace("vcpus = 4\n", "vcpu = 4\n", 1))
    with pytest.raises(ConfigFileError) as raised:
        load_catalog(planted)
    assert str(raised.value).startswith(
        f"{planted}: hosts.inf2.xlarge.vcpu is not a setting (did you mean hosts.inf2.xlarge.vcpus?)"
    )


def test_an_unknown_key_in_a_plan_file_is_refused_with_the_nearest_name(tmp_path) -> None:
    path = write_plan(make_plan("inf2.xlarge"), tmp_path)
    path.write_text(path.read_text().replace('"why":', '"whyy":', 1))
    with pytest.raises(ConfigFileError) as raised:
        read_plan(tmp_path, "neuron")
    assert str(raised.value).startswith(f"{path}: whyy is not a setting (did you mean why?)")
