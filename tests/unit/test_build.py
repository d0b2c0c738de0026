"""The build command: fails fast for a missing SDK, skips what is up to date, refuses tampered artifacts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from blip_serving.errors import ArtifactError
from blip_serving.manifest import Manifest, read_manifest, verify_artifact_files
from blip_serving.versions import VersionStore
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


def test_a_second_build_of_the_same_model_is_its_version_and_force_makes_a_new_one(tiny_build, tmp_path) -> None:
    from blip_build import build

    shutil.copytree(tiny_build.artifacts, tmp_path / "artifacts")  # the session's build stays as it is
    shutil.copytree(tiny_build.repository, tmp_path / "model_repository")
    store = VersionStore(tmp_path / "artifacts" / "cpu")
    assert store.versions() == [1]

    def run(force: bool) -> tuple[list[str], Manifest]:
        lines: list[str] = []
        manifest = build(
            "random-tiny",
            "cpu",
            artifacts=tmp_path / "artifacts",
            repository=tmp_path / "model_repository",
            force=force,
            progress=lines.append,
        )
        return lines, manifest

    lines, same = run(force=False)
    assert sum("unchanged since 1, linked" in line for line in lines) == 3
    assert "version 1: this build's checkpoint, spec, target and code are version 1's" in lines
    assert same.directory == store.path(1) and store.versions() == [1], "no version for an identical build"
    assert not list(store.root.glob(".staging-*")), "the staging directory is gone"
    first = {name: same.artifact_files(name)[0][1].read_bytes() for name in same.record.components}
    lines, forced = run(force=True)
    assert not any("linked" in line for line in lines) and "version 2: " + str(store.path(2)) in lines
    assert forced.directory == store.path(2) and store.versions() == [1, 2]
    # Version 1 is never written again: its files are the bytes they were, and its manifest still verifies them.
    for name, data in first.items():
        assert store.manifest(1).artifact_files(name)[0][1].read_bytes() == data
        verify_artifact_files(store.manifest(1), name, "cpu")
    configs = (tmp_path / "model_repository" / "image_encoder" / "configs" / "cpu.pbtxt").read_text()
    assert '"../artifacts/cpu/2"' in configs, "the build's configs name the version it made"


def test_tampered_or_foreign_artifact_is_refused(tiny_build, tmp_path) -> None:
    copy = tmp_path / "cpu"
    shutil.copytree(tiny_build.target_dir(), copy)
    manifest = read_manifest(copy)
    ((sizes, path),) = verify_artifact_files(manifest, "text_encoder", "cpu")
    assert sizes == {} and path.is_file()
    with pytest.raises(ArtifactError, match="holds 'cpu' artifacts; this model is configured for 'neuron'"):
        verify_artifact_files(manifest, "text_encoder", "neuron")
    path = manifest.artifact_files("text_encoder")[0][1]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="sha256"):
        verify_artifact_files(manifest, "text_encoder", "cpu")


def test_an_artifact_changed_after_its_first_mib_is_refused(tiny_build, tmp_path) -> None:
    """Real artifacts are hundreds of MB: the whole file is hashed, not its head."""
    import json

    from blip_serving.manifest import MANIFEST, sha256_file

    copy = tmp_path / "cpu"
    shutil.copytree(tiny_build.target_dir(), copy)
    data = json.loads((copy / MANIFEST).read_text())
    entry = data["components"]["text_encoder"]["files"][0]
    path = copy / entry["file"]
    padded = path.read_bytes() + bytes(3 * 2**20)  # a 3 MiB tail, as if the artifact were large
    path.write_bytes(padded)
    entry["sha256"] = sha256_file(path)
    (copy / MANIFEST).write_text(json.dumps(data))
    verify_artifact_files(read_manifest(copy), "text_encoder", "cpu")
    tampered = bytearray(padded)
    tampered[2 * 2**20 + 7] ^= 0xFF  # one byte, two MiB in
    path.write_bytes(bytes(tampered))
    with pytest.raises(ArtifactError, match="sha256"):
        verify_artifact_files(read_manifest(copy), "text_encoder", "cpu")


def test_sha256_file_hashes_every_byte_of_a_large_file(tmp_path) -> None:
    import hashlib

    from blip_serving.manifest import sha256_file

    data = bytes(range(256)) * (14 * 2**12 + 3)  # 3.5 MiB and a few bytes: several read blocks, a short last one
    path = tmp_path / "artifact.pt"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1] + b"\x00")
    assert sha256_file(path) == hashlib.sha256(data[:-1] + b"\x00").hexdigest() != hashlib.sha256(data).hexdigest()


def test_a_manifest_without_a_component_or_with_another_digest_is_refused_by_name(tiny_build, tmp_path) -> None:
    import json

    from blip_serving.manifest import MANIFEST

    copy = tmp_path / "cpu"
    shutil.copytree(tiny_build.target_dir(), copy)
    data = json.loads((copy / MANIFEST).read_text())
    entry = data["components"]["text_encoder"]["files"][0]
    real = entry["sha256"]
    entry["sha256"] = "0123456789abcdef" + real[16:]
    del data["components"]["text_decoder"]
    (copy / MANIFEST).write_text(json.dumps(data))
    manifest = read_manifest(copy)
    path = copy / entry["file"]
    expected = f"artifact {path} has sha256 {real[:12]}..., the manifest says 0123456789ab..."
    with pytest.raises(ArtifactError, match=f"^{re.escape(expected)}$"):
        verify_artifact_files(manifest, "text_encoder", "cpu")
    with pytest.raises(ArtifactError, match=f"^manifest in {re.escape(str(copy))} has no 'text_decoder' artifact$"):
        verify_artifact_files(manifest, "text_decoder", "cpu")
    path.unlink()
    with pytest.raises(ArtifactError, match=f"^artifact {re.escape(str(path))} is missing$"):
        verify_artifact_files(manifest, "text_encoder", "cpu")


def test_a_config_that_differs_from_the_artifacts_is_refused_naming_each_tensor(tiny_build) -> None:
    from blip_serving.manifest import check_config_matches

    manifest = read_manifest(tiny_build.target_dir())
    inputs, outputs = manifest.spec.model_tensors("text_decoder")
    config = {
        kind: [{"name": t.name, "data_type": t.triton_dtype, "dims": [str(d) for d in t.dims]} for t in tensors]
        for kind, tensors in (("input", inputs), ("output", outputs))
    }
    check_config_matches(manifest, "text_decoder", config)  # dims as strings, as Triton's JSON config has them
    changed = {**config, "input": [*config["input"][1:], {"name": "EXTRA", "data_type": "TYPE_FP32", "dims": ["2"]}]}
    first = inputs[0]
    with pytest.raises(ArtifactError) as raised:
        check_config_matches(manifest, "text_decoder", changed)
    assert str(raised.value) == (
        f"text_decoder: the config's inputs do not match the artifacts in {manifest.directory} "
        f"(EXTRA: config ('TYPE_FP32', [2]), artifacts absent; "
        f"{first.name}: config absent, artifacts ('{first.triton_dtype}', {list(first.dims)})): "
        "rebuild with `make build-artifacts TARGET=cpu`"
    )
    with pytest.raises(ArtifactError, match=r"^text_decoder: the config's outputs do not match"):
        check_config_matches(manifest, "text_decoder", {**config, "output": config["output"][:1]})


def test_the_build_takes_the_plan_for_its_target_and_says_so(tiny_build, tmp_path, capsys) -> None:
    """``make plan`` then ``make build-artifacts``: the plan's deployment is built, explicit flags still win."""
    from blip_build.cli import main
    from blip_serving.model_config import parse
    from blip_serving.placement import make_plan, write_plan

    shutil.copytree(tiny_build.artifacts, tmp_path / "artifacts")
    shutil.copytree(tiny_build.repository, tmp_path / "model_repository")
    plan = make_plan("local", layout="colocated").model_copy(
        update={"deployment": make_plan("local", layout="colocated").deployment.replaced(intra_op_threads=3)}
    )
    write_plan(plan, tmp_path / "artifacts")
    where = ["--artifacts", str(tmp_path / "artifacts"), "--repository", str(tmp_path / "model_repository")]
    assert main(["--target", "cpu", "--model", "random-tiny", *where]) == 0
    printed = capsys.readouterr().out
    assert f"(HOST_TYPE=local): {plan.why}" in printed
    assert "every layout's configs" in printed and "cpu.pbtxt, colocated-cpu.pbtxt" in printed
    config = parse((tmp_path / "model_repository" / "blip_vqa" / "configs" / "colocated-cpu.pbtxt").read_text())
    assert config.parameters["intra_op_threads"].string_value == "3", "the plan's deployment was built"
