"""Compiling on a build host: artifacts a build could not run are kept with reference outputs, and the first load
on the device verifies them before anything is served.

The Neuron build compiles NEFFs on any EC2 machine (``torch_neuronx.trace(..., cpu_backend=True)``), where they
cannot run. Here a cpu target that says it cannot run what it builds stands in for that build: the serving code
then loads on the CPU what the "device" would load, and the verification is the real one.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pytest
import torch

from blip_build import build
from blip_serving.errors import ArtifactError
from blip_serving.manifest import read_manifest
from blip_serving.stub.models import load_models
from blip_serving.stub.references import reference_path
from blip_serving.targets.cpu import CpuTarget


@dataclass(frozen=True)
class BuildHostCpu(CpuTarget):
    """The cpu target on a machine that cannot run its artifacts, as a Neuron build host cannot run NEFFs."""

    @property
    def runs_here(self) -> bool:
        return False


@pytest.fixture(scope="module")
def host_build(tmp_path_factory, tiny_build):
    root = tmp_path_factory.mktemp("build-host")
    lines: list[str] = []
    shutil.copytree(tiny_build.repository, root / "model_repository", ignore=shutil.ignore_patterns("configs"))
    manifest = build(
        str(tiny_build.checkpoint),
        BuildHostCpu(static_shapes=True),
        artifacts=root / "artifacts",
        repository=root / "model_repository",
        progress=lines.append,
    )
    return manifest, lines


def copy_of(manifest, tmp_path):
    shutil.copytree(manifest.directory, tmp_path / "cpu")
    return read_manifest(tmp_path / "cpu")


def test_a_build_that_cannot_run_its_artifacts_marks_them_unverified_and_keeps_references(host_build) -> None:
    manifest, lines = host_build
    for name, component in manifest.record.components.items():
        assert component.max_relative_error is None, "nothing was run, nothing is claimed"
        assert component.files and not any(f.verified for f in component.files)
        for _, path in manifest.artifact_files(name):
            assert reference_path(path).is_file()
    assert any(
        "not run here (no cpu device)" in line and "their first load on the device checks" in line for line in lines
    )


def test_the_first_load_verifies_every_artifact_against_its_reference(host_build, tmp_path, monkeypatch) -> None:
    manifest = copy_of(host_build[0], tmp_path)
    checked = []
    real_load = torch.load

    def recording_load(path, *args, **kwargs):
        checked.append(str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    models = load_models(manifest)
    artifacts = [path for name in manifest.record.components for _, path in manifest.artifact_files(name)]
    assert sorted(checked) == sorted(str(reference_path(path)) for path in artifacts), "every artifact, once"
    assert set(models) == {"image_encoder", "text_encoder", "text_decoder"}


def test_an_artifact_that_does_not_reproduce_its_reference_is_not_served(host_build, tmp_path) -> None:
    manifest = copy_of(host_build[0], tmp_path)
    (_, artifact), *_ = manifest.artifact_files("text_encoder")
    reference = torch.load(reference_path(artifact), weights_only=True)
    reference["outputs"] = reference["outputs"] + 1.0  # what a miscompiled NEFF would answer, seen from the other side
    torch.save(reference, reference_path(artifact))
    with pytest.raises(ArtifactError, match=rf"^{artifact.name} differs from the module it was compiled from by"):
        load_models(manifest)


def test_an_unverified_artifact_without_a_reference_is_refused_unless_told(host_build, tmp_path, monkeypatch) -> None:
    manifest = copy_of(host_build[0], tmp_path)
    (_, artifact), *_ = manifest.artifact_files("image_encoder")
    reference_path(artifact).unlink()
    monkeypatch.delenv("BLIP_ALLOW_UNVERIFIED", raising=False)
    with pytest.raises(ArtifactError, match=rf"^{artifact.name} was built on a host that could not run it"):
        load_models(manifest)
    monkeypatch.setenv("BLIP_ALLOW_UNVERIFIED", "1")
    assert load_models(manifest), "served unverified, as asked"
