"""The build command: fails fast for a missing SDK, skips what is up to date, refuses tampered artifacts."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from blip_serving.artifacts import read_manifest, verify_artifact_files
from blip_serving.errors import ArtifactError
from tests.conftest import ROOT


def test_neuron_without_the_sdk_fails_at_once_with_one_line(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "blip_build",
            "--target",
            "neuron",
            "--artifacts",
            str(tmp_path / "a"),
            "--repository",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "torch-neuronx" in lines[0], result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "r").exists(), "nothing may be written"


def test_gpu_without_cuda_fails_with_one_line(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "blip_build", "--target", "gpu", "--artifacts", str(tmp_path / "a")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode != 0 and "needs CUDA" in result.stderr and not (tmp_path / "a").exists()


def test_second_build_skips_and_force_rebuilds(tiny_build, capsys) -> None:
    from blip_build.cli import main

    args = [
        "--model",
        "random-tiny",
        "--artifacts",
        str(tiny_build.artifacts),
        "--repository",
        str(tiny_build.repository),
    ]
    assert main(args) == 0
    assert capsys.readouterr().out.count("up to date") == 3
    manifest = read_manifest(tiny_build.target_dir())
    before = {name: manifest.artifact_path(name).stat().st_mtime_ns for name in manifest.data["components"]}
    assert main([*args, "--force"]) == 0
    assert "up to date" not in capsys.readouterr().out
    after = {name: manifest.artifact_path(name).stat().st_mtime_ns for name in manifest.data["components"]}
    assert all(after[name] > before[name] for name in before), "FORCE=1 rewrites every artifact"


def test_tampered_or_foreign_artifact_is_refused(tiny_build, tmp_path) -> None:
    copy = tmp_path / "cpu"
    shutil.copytree(tiny_build.target_dir(), copy)
    manifest = read_manifest(copy)
    ((sizes, path),) = verify_artifact_files(manifest, "text_encoder", "cpu")
    assert sizes == {} and path.is_file()
    with pytest.raises(ArtifactError, match="holds 'cpu' artifacts; this model is configured for 'neuron'"):
        verify_artifact_files(manifest, "text_encoder", "neuron")
    path = manifest.artifact_path("text_encoder")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="sha256"):
        verify_artifact_files(manifest, "text_encoder", "cpu")
