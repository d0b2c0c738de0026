"""The real Triton server from the nvidia-pytriton wheel, serving the session's random-tiny build in each layout.

Every test that uses ``triton`` or ``client`` runs once against the ensemble layout and once against the colocated
one: the same calls must get the same answers and the same errors, whichever layout a fleet runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from blip_client.client import BlipVqaClient
from blip_serving.layouts import LAYOUT_NAMES
from blip_serving.triton.process import TritonServer


@pytest.fixture(scope="session", params=LAYOUT_NAMES)
def triton(tiny_build, request):
    server = TritonServer(tiny_build.repository, "cpu", layout=request.param)
    server.start()
    yield server
    server.stop()
    code = server.process.returncode
    assert code == 0, f"tritonserver did not shut down cleanly (exit {code}):\n{server.recent_log()}"


@pytest.fixture(scope="session")
def client(triton):
    with BlipVqaClient(triton.http_url) as http_client:
        yield http_client


@pytest.fixture(scope="module")
def colocated_fleet(tiny_build):
    """One tritonserver in the colocated layout, for a module that starts its own API tier processes."""
    server = TritonServer(tiny_build.repository, "cpu", layout="colocated")
    server.start()
    yield server
    server.stop()


def other_checkpoint(tiny_checkpoint: Path, directory: Path) -> Path:
    """Another checkpoint of random-tiny's architecture: its weights moved by seeded noise, and its "yes" and "no"
    output rows swapped, so that it answers each yes/no question the other way (a fine-tune with its labels
    inverted): the candidate a canary must catch."""
    import torch
    from transformers import BlipForQuestionAnswering, BlipProcessor

    from blip_build.artifacts import yes_no_token_ids

    model = BlipForQuestionAnswering.from_pretrained(tiny_checkpoint).eval()
    processor = BlipProcessor.from_pretrained(tiny_checkpoint)
    yes, no = yes_no_token_ids(processor.tokenizer)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.01)
        head = model.text_decoder.cls.predictions
        head.decoder.weight[[yes, no]] = head.decoder.weight[[no, yes]].clone()
        head.bias[[yes, no]] = head.bias[[no, yes]].clone()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def two_versions(tiny_build, tmp_path_factory) -> Path:
    """A repository whose cpu artifacts hold version 1 (random-tiny) and version 2 (``other_checkpoint``)."""
    from blip_build import build
    from blip_serving.versions import VersionStore

    root = tmp_path_factory.mktemp("versions")
    shutil.copytree(tiny_build.artifacts, root / "artifacts")
    repository = shutil.copytree(tiny_build.repository, root / "model_repository")
    other = other_checkpoint(tiny_build.checkpoint, root / "other-checkpoint")
    manifest = build(str(other), "cpu", artifacts=root / "artifacts", repository=repository)
    store = VersionStore(root / "artifacts" / "cpu")
    assert store.versions() == [1, 2] and manifest.directory == store.path(2)
    assert store.manifest(1).record.checkpoint.fingerprint != store.manifest(2).record.checkpoint.fingerprint
    return repository
