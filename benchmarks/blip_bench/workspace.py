"""A build the benchmarks own, apart from ``artifacts/`` and ``model_repository/`` of `make build-artifacts`.

The model.py files are copied from the committed repository, artifacts are built (or found up to date) for the
benchmark's model, and configs are rewritten per deployment without tracing again.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from blip_bench.frames import ROOT
from blip_serving.deployment import Deployment
from blip_serving.manifest import Manifest, read_manifest
from blip_serving.model_config import write_repository_configs
from blip_serving.versions import VersionStore

DEFAULT_WORKSPACE = ROOT / ".bench"


@dataclass(frozen=True)
class Workspace:
    repository: Path
    artifacts: Path
    target: str

    @property
    def target_dir(self) -> Path:
        """The target's newest model version: the one the workspace's build made or found unchanged."""
        store = VersionStore(self.artifacts / self.target)
        return store.path(store.latest() or 1)

    @property
    def manifest(self) -> Manifest:
        return read_manifest(self.target_dir)

    def deploy(self, deployment: Deployment) -> None:
        """Rewrite the configs for ``deployment`` (instances, threads, batching delay); artifacts stay."""
        write_repository_configs(self.manifest.spec, self.target, self.repository, self.target_dir, deployment)


def copy_model_sources(repository: Path) -> Path:
    """``<repository>/<model>/1/model.py`` for every model, from the committed repository (no configs)."""
    shutil.copytree(
        ROOT / "model_repository",
        repository,
        ignore=shutil.ignore_patterns("configs", "__pycache__"),
        dirs_exist_ok=True,
    )
    return repository


def prepare(model: str, target: str, root: Path = DEFAULT_WORKSPACE, **options) -> Workspace:
    """Build ``model`` for ``target`` under ``root`` (skipped where up to date) and return the workspace."""
    from blip_build import build
    from blip_serving.errors import ArtifactError, TargetUnavailableError

    repository = copy_model_sources(root / "model_repository")
    artifacts = root / "artifacts"
    try:
        build(
            model,
            target,
            artifacts=artifacts,
            repository=repository,
            progress=lambda line: print(line, flush=True),
            **options,
        )
    except (ArtifactError, TargetUnavailableError, OSError, ValueError) as error:
        raise SystemExit(f"building {model} for {target} failed: {error}") from error
    return Workspace(repository=repository, artifacts=artifacts, target=target)
