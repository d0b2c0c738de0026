"""The cpu, gpu and neuron repositories: one source, identical metadata, NeuronCores per instance, load checks.

The Neuron SDK does not exist here. Everything around it is tested: the configs, the NeuronCore range each
instance reserves, and the load order (cores set, then ``torch_neuronx`` imported, then the artifact loaded),
with a recording stand-in for ``torch_neuronx`` and the cpu artifacts standing in for compiled NEFFs.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import shutil
import sys
import types

import numpy as np
import pytest
import torch
import triton_python_backend_utils as pb_utils  # the stub from tests/unit/conftest.py
from tritonclient.grpc import model_config_pb2 as pb

from blip_serving.deployment import Deployment
from blip_serving.errors import ArtifactError
from blip_serving.instance_names import instance_index
from blip_serving.manifest import MANIFEST, read_manifest
from blip_serving.model_config import repository_configs, write_repository_configs
from blip_serving.spec import COMPONENT_NAMES, PIXEL_MODEL, PUBLIC_MODEL, BlipSpec
from blip_serving.targets import TARGET_NAMES
from blip_serving.targets.neuron import (
    NEURON_VISIBLE_CORES_ENV,
    neuron_core_blocks,
    neuron_cores_needed,
    neuron_release,
    neuron_visible_cores,
)
from tests.conftest import QUESTIONS, VALID_IMAGES
from tests.unit.conftest import load_model


def _wire(config) -> list[tuple[str, int, list[int]]]:
    return [(t.name, t.data_type, list(t.dims)) for t in (*config.input, *config.output)]


def test_the_three_targets_expose_identical_models_inputs_and_outputs(tiny_build) -> None:
    spec = read_manifest(tiny_build.target_dir()).spec
    per_target = {target: repository_configs(spec, target, f"../artifacts/{target}") for target in TARGET_NAMES}
    reference = per_target["cpu"]
    assert set(reference) == {PUBLIC_MODEL, PIXEL_MODEL, *COMPONENT_NAMES}
    for target, configs in per_target.items():
        assert configs.keys() == reference.keys(), target
        for name, config in configs.items():
            assert _wire(config) == _wire(reference[name]), f"{target}/{name} differs from cpu"
            assert config.max_batch_size == reference[name].max_batch_size
    kinds = {
        t: {pb.ModelInstanceGroup.Kind.Name(g.kind) for n in COMPONENT_NAMES for g in per_target[t][n].instance_group}
        for t in TARGET_NAMES
    }
    assert kinds == {"cpu": {"KIND_CPU"}, "gpu": {"KIND_GPU"}, "neuron": {"KIND_MODEL"}}
    for public in (PUBLIC_MODEL, PIXEL_MODEL):  # the ensembles, their pixel settings included, are target-free
        assert per_target["neuron"][public] == per_target["gpu"][public] == reference[public]


def test_neuron_core_blocks_are_disjoint_and_split_evenly_per_instance() -> None:
    deployment = Deployment(instances=2, neuron_cores_per_instance=2)
    blocks = neuron_core_blocks(deployment)
    assert blocks == {"image_encoder": (0, 3), "text_encoder": (4, 7), "text_decoder": (8, 11)}
    assert neuron_cores_needed(deployment) == 12
    ranges = [neuron_visible_cores(*blocks[name], 2, i) for name in COMPONENT_NAMES for i in range(2)]
    assert ranges == ["0-1", "2-3", "4-5", "6-7", "8-9", "10-11"]
    assert neuron_visible_cores(5, 5, 1, 0) == "5"
    with pytest.raises(ValueError, match="cannot be split evenly among 2 instances"):
        neuron_visible_cores(0, 2, 2, 0)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        neuron_visible_cores(0, 3, 2, 2)
    assert instance_index("text_decoder_0_3") == 3
    with pytest.raises(ValueError, match="is not <model>_<group>_<index>"):
        instance_index("text_decoder")


def test_neuron_config_names_each_components_core_block(tiny_build, tmp_path) -> None:
    spec = read_manifest(tiny_build.target_dir()).spec
    configs = repository_configs(spec, "neuron", "../artifacts/neuron", Deployment(instances=3))
    for name, (start, end) in neuron_core_blocks(Deployment(instances=3)).items():
        config = configs[name]
        assert config.instance_group[0].count == 3
        assert (
            config.parameters["neuron_core_start_index"].string_value,
            config.parameters["neuron_core_end_index"].string_value,
        ) == (str(start), str(end))
    assert "neuron_core_start_index" not in repository_configs(spec, "gpu", "x")["text_encoder"].parameters


# The SDK the stand-in claims to be: the matrix's release, which the stub holds the manifest's versions to.
SDK_VERSIONS = {
    "torch_neuronx": neuron_release().pip.torch_neuronx,
    "neuronxcc": neuron_release().pip.neuronx_cc,
}


class _RecordingNeuronSdk(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Stands in for ``torch_neuronx`` (and ``neuronxcc``, for its version) and records what the process looked
    like when ``torch_neuronx`` was imported."""

    def __init__(self, events: list[tuple[str, str | None]]) -> None:
        self.events = events

    def find_spec(self, name, path, target=None):
        return importlib.machinery.ModuleSpec(name, self) if name in SDK_VERSIONS else None

    def create_module(self, spec):
        return types.ModuleType(spec.name)

    def exec_module(self, module) -> None:
        module.__version__ = SDK_VERSIONS[module.__name__]
        if module.__name__ == "torch_neuronx":
            self.events.append(("import torch_neuronx", os.environ.get(NEURON_VISIBLE_CORES_ENV)))


@pytest.fixture
def neuron_repository(static_build, tmp_path, monkeypatch):
    """A neuron repository (2 instances per component) over static-shape cpu artifacts relabelled as NEFFs."""
    artifacts = tmp_path / "artifacts" / "neuron"
    shutil.copytree(static_build.target_dir(), artifacts)
    manifest = json.loads((artifacts / MANIFEST).read_text())
    assert manifest["target"]["static_shapes"], "one artifact per bucket, as torch_neuronx.trace builds"
    manifest["target"]["name"] = "neuron"
    # What a build with the matrix's SDK records (the stub refuses NEFFs from another release).
    manifest["versions"] |= {"torch_neuronx": SDK_VERSIONS["torch_neuronx"], "neuronx_cc": SDK_VERSIONS["neuronxcc"]}
    (artifacts / MANIFEST).write_text(json.dumps(manifest))
    repository = tmp_path / "model_repository"
    shutil.copytree(static_build.repository, repository, ignore=shutil.ignore_patterns("configs"))
    spec = BlipSpec.from_dict(manifest["spec"])
    write_repository_configs(spec, "neuron", repository, artifacts, Deployment(instances=2))

    events: list[tuple[str, str | None]] = []
    monkeypatch.delenv(NEURON_VISIBLE_CORES_ENV, raising=False)
    monkeypatch.delenv("BLIP_NEURON_ALLOCATION", raising=False)  # as a fresh stub process: nothing allocated
    monkeypatch.delitem(sys.modules, "torch_neuronx", raising=False)
    monkeypatch.delitem(sys.modules, "neuronxcc", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_RecordingNeuronSdk(events), *sys.meta_path])
    real_load = torch.jit.load

    def recording_load(path, map_location=None):
        events.append(("torch.jit.load", os.environ.get(NEURON_VISIBLE_CORES_ENV)))
        return real_load(path, map_location=map_location)

    monkeypatch.setattr(torch.jit, "load", recording_load)
    return repository, events


def test_each_neuron_instance_reserves_its_cores_before_the_sdk_and_the_artifact_load(neuron_repository) -> None:
    repository, events = neuron_repository
    load_model(repository, "text_encoder", "neuron", instance=1)
    # text_encoder owns cores 2..3 (image_encoder 0..1); instance 1 of 2 takes core 3, set before anything loads;
    # then one artifact per question-batch, question-length and frame bucket (2 x 2 x 3).
    assert events == [("import torch_neuronx", "3")] + [("torch.jit.load", "3")] * 12


def test_a_neuron_repository_serves_the_same_answers_as_cpu(neuron_repository, tiny_reference) -> None:
    repository, _ = neuron_repository
    models = {name: load_model(repository, name, "neuron") for name in COMPONENT_NAMES}
    image = VALID_IMAGES[0]
    request = pb_utils.InferenceRequest
    (embeds,) = models["image_encoder"].execute([request({"IMAGE": np.array([[image.read_bytes()]], dtype=object)})])
    questions = np.array([[q.encode() for q in QUESTIONS] * 2], dtype=object)  # 6 questions: chunks of 4, padded
    (encoded,) = models["text_encoder"].execute([request({"QUESTIONS": questions, **embeds.outputs()})])
    (decoded,) = models["text_decoder"].execute([request(encoded.outputs())])
    answers = [a.decode() for a in decoded.outputs()["ANSWERS"].reshape(-1)]
    assert answers == [tiny_reference.answer(image, q) for q in QUESTIONS] * 2
    scores = decoded.outputs()["SCORES"].reshape(-1)
    assert np.allclose(scores, [tiny_reference.score(image, q) for q in QUESTIONS] * 2, atol=1e-5)
    # Five frames in one dynamic batch: a chunk of 4 and one padded from 1; each frame gets its own row.
    frames = [request({"IMAGE": np.array([[path.read_bytes()]], dtype=object)}) for path in VALID_IMAGES[:5]]
    batched = [r.outputs()["IMAGE_EMBEDS"] for r in models["image_encoder"].execute(frames)]
    alone = [models["image_encoder"].execute([f])[0].outputs()["IMAGE_EMBEDS"] for f in frames]
    assert all(b.shape == (1, *a.shape[1:]) and np.allclose(a, b, atol=1e-5) for a, b in zip(alone, batched))


def test_colocated_on_two_neuron_cores_each_instance_reserves_its_own_core_and_answers_as_cpu(
    neuron_repository, tiny_reference
) -> None:
    """inf2.xlarge: two colocated blip_vqa instances, one per NeuronCore, each loading all three NEFF sets."""
    repository, events = neuron_repository
    artifacts = repository.parent / "artifacts" / "neuron"
    spec = read_manifest(artifacts).spec
    deployment = Deployment(layout="colocated", instances=2)
    assert neuron_cores_needed(deployment) == 2 and neuron_core_blocks(deployment) == {"blip_vqa": (0, 1)}
    write_repository_configs(spec, "neuron", repository, artifacts, deployment)
    files = sum(len(read_manifest(artifacts).artifact_files(name)) for name in COMPONENT_NAMES)
    for instance in (0, 1):
        events.clear()
        sys.modules.pop("torch_neuronx", None)  # each instance is its own process: the SDK is imported afresh
        model = load_model(repository, "blip_vqa", "neuron", instance=instance, config="colocated-neuron")
        core = str(instance)
        assert events == [("import torch_neuronx", core)] + [("torch.jit.load", core)] * files
    request = pb_utils.InferenceRequest
    questions = np.array([[q.encode() for q in QUESTIONS] * 2], dtype=object)
    # Three frames in one execute: the text encoder pads them to its 4-frame bucket, the decoder chunks 18 questions.
    responses = model.execute(
        [
            request({"IMAGE": np.array([[path.read_bytes()]], dtype=object), "QUESTIONS": questions})
            for path in VALID_IMAGES[:3]
        ]
    )
    for image, response in zip(VALID_IMAGES[:3], responses):
        assert response.error is None
        assert [a.decode() for a in response.outputs()["ANSWERS"].reshape(-1)] == [
            tiny_reference.answer(image, q) for q in QUESTIONS
        ] * 2
        expected = [tiny_reference.score(image, q) for q in QUESTIONS] * 2
        assert np.allclose(response.outputs()["SCORES"].reshape(-1), expected, atol=1e-5)


def test_artifacts_of_another_target_are_refused_at_load(neuron_repository) -> None:
    repository, _ = neuron_repository
    manifest_path = repository.parent / "artifacts" / "neuron" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["target"]["name"] = "gpu"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="holds 'gpu' artifacts; this model is configured for 'neuron'"):
        load_model(repository, "image_encoder", "neuron")


def test_a_stale_artifact_after_a_spec_change_is_refused_at_load(tiny_build, tmp_path) -> None:
    repository = tmp_path / "model_repository"
    shutil.copytree(tiny_build.repository, repository, ignore=shutil.ignore_patterns("configs"))
    spec = read_manifest(tiny_build.target_dir()).spec
    changed = BlipSpec.from_dict(spec.to_dict() | {"image_tokens": spec.image_tokens + 8})
    write_repository_configs(changed, "cpu", repository, tiny_build.target_dir())
    with pytest.raises(ArtifactError, match=r"IMAGE_EMBEDS: config .*25.*artifacts .*17.*rebuild with"):
        load_model(repository, "text_encoder", "cpu")
    decoder = load_model(repository, "text_decoder", "cpu")  # its tensors did not change: it still loads and answers
    embeds = np.zeros((1, 2, spec.question_tokens, spec.text_hidden_size), dtype=np.float32)
    mask = np.ones((1, 2, spec.question_tokens), dtype=np.int64)
    (response,) = decoder.execute([pb_utils.InferenceRequest({"QUESTION_EMBEDS": embeds, "QUESTION_MASK": mask})])
    assert response.error is None and response.outputs()["SCORES"].shape == (1, 2)


def test_a_truncated_artifact_is_refused_at_load(tiny_build, tmp_path) -> None:
    shutil.copytree(tiny_build.artifacts / "cpu", tmp_path / "artifacts" / "cpu")
    repository = tmp_path / "model_repository"
    shutil.copytree(tiny_build.repository, repository, ignore=shutil.ignore_patterns("configs"))
    artifacts = tmp_path / "artifacts" / "cpu" / tiny_build.target_dir().name
    write_repository_configs(read_manifest(artifacts).spec, "cpu", repository, artifacts)
    path = artifacts / "image_encoder.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactError, match=r"image_encoder.pt has sha256 .* the manifest says"):
        load_model(repository, "image_encoder", "cpu")


def test_serving_gpu_without_a_gpu_fails_with_one_line(tmp_path) -> None:
    import subprocess

    from tests.conftest import ROOT

    result = subprocess.run(
        [sys.executable, "-m", "blip_serving.serve", "--target", "gpu", "--repository", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: TARGET=gpu needs CUDA, and torch.cuda.is_available() is False"), line
