"""One Neuron release, pinned once: the matrix, the image that installs it, and the checks that hold the SDK to it.

There is no Neuron SDK here. Where a check needs one, a stand-in ``torch_neuronx`` and ``neuronxcc`` (modules with
a ``__version__``, found through ``sys.meta_path``) take its place; the code under test is the real one.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import subprocess
import sys
import tomllib
import types

import pytest

from blip_contract.records import ConfigFileError
from blip_serving.errors import ArtifactError, TargetUnavailableError
from blip_serving.stub_parameters import StubParameters
from blip_serving.targets.neuron import (
    NEURON_VISIBLE_CORES_ENV,
    NeuronRelease,
    NeuronTarget,
    check_release,
    neuron_release,
    parse_core_list,
    within_allocation,
)
from tests.conftest import ROOT

MATRIX = ROOT / "blip_serving" / "targets" / "neuron_release.toml"
DOCKERFILE = ROOT / "docker" / "Dockerfile.neuron"


class StandInSdk(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``torch_neuronx`` and ``neuronxcc`` at given versions, for a machine without the Neuron SDK."""

    def __init__(self, torch_neuronx: str, neuronx_cc: str) -> None:
        self.versions = {"torch_neuronx": torch_neuronx, "neuronxcc": neuronx_cc}

    def find_spec(self, name, path, target=None):
        return importlib.machinery.ModuleSpec(name, self) if name in self.versions else None

    def create_module(self, spec):
        return types.ModuleType(spec.name)

    def exec_module(self, module) -> None:
        module.__version__ = self.versions[module.__name__]


@pytest.fixture
def sdk(monkeypatch):
    """Install a stand-in SDK at the given versions for the test's duration."""

    def install(torch_neuronx: str, neuronx_cc: str) -> None:
        for name in ("torch_neuronx", "neuronxcc"):
            monkeypatch.delitem(sys.modules, name, raising=False)
        monkeypatch.setattr(sys, "meta_path", [StandInSdk(torch_neuronx, neuronx_cc), *sys.meta_path])

    return install


def pinned() -> dict[str, str]:
    pip = neuron_release().pip.model_dump(by_alias=True)
    return {"torch_neuronx": pip["torch-neuronx"], "neuronx_cc": pip["neuronx-cc"]}


def test_the_matrix_names_one_release_with_its_sources() -> None:
    matrix = tomllib.loads(MATRIX.read_text())
    assert NeuronRelease.model_validate(matrix) == neuron_release(), "the package reads the same file"
    assert matrix["release"]["source"].startswith("https://awsdocs-neuron.readthedocs-hosted.com/")
    assert matrix["image"]["source"].startswith("https://docs.nvidia.com/")
    # Exact versions only: a wildcard mixes releases.
    for table in ("pip", "apt", "node"):
        for name, version in matrix[table].items():
            if name != "index":
                assert re.fullmatch(r"\d+(\.\d+)+", version), f"[{table}] {name} = {version!r} is not exact"
    assert matrix["pip"]["torch-neuronx"].startswith(matrix["pip"]["torch"] + "."), "torch-neuronx's own torch"
    assert matrix["image"]["python"] in ("3.11", "3.12", "3.13"), "torch-neuronx 2.9 supports Python 3.11 to 3.13"


def test_the_image_installs_the_matrix_and_no_version_of_its_own() -> None:
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert base == neuron_release().image.base, "FROM cannot read the matrix: its default must equal it"
    assert "FROM ${BASE_IMAGE}" in text
    for name in (*neuron_release().pip.model_dump(by_alias=True), *neuron_release().apt):
        if name not in ("index", "torch"):
            assert not re.search(rf"{re.escape(name)}\s*[=<>~]", text), f"the Dockerfile pins {name} itself"
    printed = {
        kind: subprocess.run(
            [sys.executable, str(ROOT / "docker" / "neuron_pins.py"), str(MATRIX), kind],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for kind in ("pip", "apt")
    }
    assert printed["pip"] == [
        "torch==2.9.0",
        f"torch-neuronx=={pinned()['torch_neuronx']}",
        f"neuronx-cc=={pinned()['neuronx_cc']}",
    ]
    assert printed["apt"] == [f"{name}={version}-*" for name, version in neuron_release().apt.items()]


def test_the_compat_check_uses_the_matrixs_python_and_torch() -> None:
    script = (ROOT / "tools" / "compat_check.sh").read_text()
    assert "MATRIX=blip_serving/targets/neuron_release.toml" in script
    assert "PYTHON_VERSION=$(field python)" in script and "TORCH=${COMPAT_TORCH:-$(field torch)}" in script


def test_a_build_with_another_sdk_release_is_refused_in_one_line(sdk) -> None:
    sdk("2.5.1.2.8.0", "2.21.33363.0")
    with pytest.raises(TargetUnavailableError) as refused:
        NeuronTarget.resolve()
    message = str(refused.value)
    assert "\n" not in message
    assert f"builds with Neuron {neuron_release().release.neuron}" in message
    assert "this machine has torch-neuronx 2.5.1.2.8.0, neuronx-cc 2.21.33363.0" in message
    sdk(pinned()["torch_neuronx"], pinned()["neuronx_cc"])
    target = NeuronTarget.resolve()
    assert target.static_shapes and target.sdk_versions() == pinned(), "what the manifest records"
    check_release(pinned())


def test_neffs_from_another_release_are_refused_at_load_naming_both(sdk) -> None:
    sdk(pinned()["torch_neuronx"], pinned()["neuronx_cc"])
    target = NeuronTarget()
    target.check_build({"python": "3.12.3", **pinned()})  # the same release loads
    with pytest.raises(ArtifactError) as refused:
        target.check_build({"torch_neuronx": "2.5.1.2.8.0", "neuronx_cc": "2.21.33363.0"})
    assert str(refused.value).startswith(
        "these NEFFs were compiled by torch-neuronx 2.5.1.2.8.0, neuronx-cc 2.21.33363.0; this image has "
        f"torch-neuronx {pinned()['torch_neuronx']}, neuronx-cc {pinned()['neuronx_cc']}: rebuild"
    )
    with pytest.raises(ArtifactError, match="compiled by torch-neuronx unknown"):
        target.check_build({"python": "3.12.3"})  # a manifest that recorded no SDK


@pytest.mark.parametrize(
    ("text", "cores"),
    [("3", [3]), ("2-3", [2, 3]), ("0,2,4", [0, 2, 4]), ("0-1,4-5", [0, 1, 4, 5]), (" 6 , 7 ", [6, 7])],
)
def test_core_lists_read_as_the_runtime_reads_them(text, cores) -> None:
    assert parse_core_list(text) == cores


def test_a_malformed_core_list_is_named() -> None:
    with pytest.raises(ValueError, match=r"NEURON_RT_VISIBLE_CORES='a-b' is not a list of cores or ranges"):
        parse_core_list("a-b")


def test_the_plans_cores_map_into_the_device_plugins_allocation() -> None:
    # A pod allocated cores 4 and 5 of a shared inf2.24xlarge: the plan's core 0 is 4, its core 1 is 5.
    assert within_allocation("0", "4-5") == "4" and within_allocation("1", "4-5") == "5"
    assert within_allocation("0-1", "4,5") == "4,5"
    with pytest.raises(TargetUnavailableError) as refused:
        within_allocation("2", "4-5")
    assert str(refused.value).startswith(
        "the plan places this instance on NeuronCores 2 (of a block numbered from 0), but the container was "
        "allocated 2 core(s), NEURON_RT_VISIBLE_CORES=4-5"
    )


def test_an_instance_takes_its_cores_from_the_allocation_where_one_exists(sdk, monkeypatch) -> None:
    parameters = StubParameters.from_config(
        {"target": "neuron", "artifact_dir": "x", "neuron_core_start_index": "0", "neuron_core_end_index": "1"}
    )
    monkeypatch.delenv("BLIP_NEURON_ALLOCATION", raising=False)  # a fresh process
    monkeypatch.setenv(NEURON_VISIBLE_CORES_ENV, "6-7")  # what the device plugin exported into the container
    placed = NeuronTarget().prepare_instance(parameters, instances=2, index=1, device_id=0)
    assert placed.description == "neuron cores 7"
    assert os.environ[NEURON_VISIBLE_CORES_ENV] == "7"
    assert NeuronTarget().prepare_instance(parameters, 2, 0, 0).description == "neuron cores 6", (
        "a second instance in the same process maps into the allocation, not into the first instance's core"
    )
    monkeypatch.delenv("BLIP_NEURON_ALLOCATION")
    monkeypatch.delenv(NEURON_VISIBLE_CORES_ENV)
    assert NeuronTarget().prepare_instance(parameters, 2, 1, 0).description == "neuron cores 1", "the host's own"
    assert NeuronTarget().prepare_instance(parameters, 2, 0, 0).description == "neuron cores 0"
    monkeypatch.delenv("BLIP_NEURON_ALLOCATION")
    monkeypatch.setenv(NEURON_VISIBLE_CORES_ENV, "6")
    with pytest.raises(TargetUnavailableError, match="allocated 1 core"):
        NeuronTarget().prepare_instance(parameters, 2, 1, 0)


def test_an_unknown_key_in_the_release_file_is_refused_with_the_nearest_name(tmp_path) -> None:
    planted = tmp_path / "neuron_release.toml"
    planted.write_text(MATRIX.read_text().replace('neuronx-cc = "', 'neuronx-c = "', 1))
    with pytest.raises(ConfigFileError) as raised:
        neuron_release(planted)
    assert str(raised.value).startswith(f"{planted}: pip.neuronx-c is not a setting (did you mean pip.neuronx-cc?)")
