"""Fixtures shared by both tiers: a random-tiny build in a temporary repository, and transformers' reference."""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from blip_bench.corpus import generated_images
from blip_bench.postgres import postgres_server
from blip_serving.versions import VersionStore

ROOT = Path(__file__).resolve().parents[1]
# The project's own images always; the workplace's extra real images beside the clone too, where they exist.
GENERATED = generated_images()
EXTRA = ROOT.parent / "shared" / "images"


def _images(kind: str) -> list[Path]:
    extra = EXTRA / kind
    return sorted((GENERATED / kind).iterdir()) + (sorted(extra.iterdir()) if extra.is_dir() else [])


VALID_IMAGES = _images("valid")
INVALID_IMAGES = _images("invalid")
QUESTIONS = ("Is the dog barking?", "what is the animal doing?", "Is the dog chewing furniture?")


@dataclass(frozen=True)
class Build:
    """A built repository: the generated configs and artifacts, and the checkpoint they came from."""

    repository: Path
    artifacts: Path
    checkpoint: Path

    def target_dir(self, target: str = "cpu") -> Path:
        """The newest model version of ``target`` (the one its configs name)."""
        store = VersionStore(self.artifacts / target)
        return store.path(store.latest() or 1)


def make_build(root: Path, model: str, **options) -> Build:
    """Copy the committed model_repository (model.py files) and build ``model`` for cpu into it."""
    from blip_bench.workspace import copy_model_sources
    from blip_build import build

    repository = copy_model_sources(root / "model_repository")
    artifacts = root / "artifacts"
    manifest = build(model, "cpu", artifacts=artifacts, repository=repository, **options)
    return Build(repository=repository, artifacts=artifacts, checkpoint=Path(manifest.checkpoint_location))


# tools/mutate.py sets this: every run of the suite (one per mutant) reuses one build instead of tracing its own.
# Tests never change a session's build in place; they copy it first.
SHARED_BUILDS = os.environ.get("BLIP_TEST_SHARED_BUILDS")


def session_build(tmp_path_factory: pytest.TempPathFactory, name: str, model: str, **options) -> Build:
    if not SHARED_BUILDS:
        return make_build(tmp_path_factory.mktemp(name), model, **options)
    root = Path(SHARED_BUILDS) / name
    if not (root / "complete").is_file():
        shutil.rmtree(root, ignore_errors=True)
        make_build(root, model, **options)
        (root / "complete").write_text("")
    artifacts = root / "artifacts"
    store = VersionStore(artifacts / "cpu")
    checkpoint = Path(store.manifest(store.latest() or 1).checkpoint_location)
    return Build(repository=root / "model_repository", artifacts=artifacts, checkpoint=checkpoint)


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    return session_build(tmp_path_factory, "tiny", "random-tiny")


@pytest.fixture(scope="session")
def static_build(tmp_path_factory: pytest.TempPathFactory, tiny_build: Build) -> Build:
    """The same checkpoint built as Neuron builds: one artifact per shape bucket, padded at run time."""
    return session_build(tmp_path_factory, "static", str(tiny_build.checkpoint), static_shapes=True)


class Reference:
    """transformers' own answers: the recipe the served answers must equal, on the saved checkpoint."""

    def __init__(self, checkpoint: Path) -> None:
        from transformers import BlipForQuestionAnswering, BlipProcessor

        self.checkpoint = checkpoint
        self.model = BlipForQuestionAnswering.from_pretrained(checkpoint).eval()
        self.processor = BlipProcessor.from_pretrained(checkpoint)

    def image(self, path: Path):
        from PIL import Image, ImageOps

        return ImageOps.exif_transpose(Image.open(path)).convert("RGB")

    @cache  # noqa: B019 - one Reference per session
    def answer(self, path: Path, question: str) -> str:
        import torch

        inputs = self.processor(images=self.image(path), text=question, return_tensors="pt")
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            output = self.model.generate(**inputs)
        return self.processor.decode(output[0], skip_special_tokens=True)

    @cache  # noqa: B019 - one Reference per session
    def score(self, path: Path, question: str) -> float:
        """P(yes) against no from the first step's raw logits of transformers' own ``generate``."""
        import torch

        inputs = self.processor(images=self.image(path), text=question, return_tensors="pt")
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            output = self.model.generate(**inputs, max_new_tokens=1, output_logits=True, return_dict_in_generate=True)
        tokenizer = self.processor.tokenizer
        pair = output.logits[0][0, tokenizer.convert_tokens_to_ids(["yes", "no"])]
        return float(torch.softmax(pair.float(), dim=-1)[0])


@pytest.fixture(scope="session")
def tiny_reference(tiny_build: Build) -> Reference:
    return Reference(tiny_build.checkpoint)


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for the session (blip_bench.postgres)."""
    with postgres_server() as url:
        yield url
