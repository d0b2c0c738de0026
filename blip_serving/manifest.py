"""The manifest of one target's artifacts, read where they are served and written by the build.

``artifacts/<target>/manifest.json`` records the checkpoint, the spec, the target and its settings, and the sha256
of every artifact. The stub reads it in ``initialize`` and refuses what it must not serve: another target's
artifacts, a truncated copy, or configs from another spec. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from blip_contract.records import one_line
from blip_serving.errors import ArtifactError
from blip_serving.spec import BlipSpec
from blip_serving.targets import Target, get_target
from blip_serving.targets.base import TargetInfo

MANIFEST = "manifest.json"
PROCESSOR_DIR = "processor"
MANIFEST_FORMAT = 2


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArtifactFile(_Record):
    sizes: dict[str, int] = Field(description="The axis sizes a static artifact was traced at; empty: any shape.")
    file: str = Field(description="File name, beside the manifest.")
    sha256: str
    bytes: int
    verified: bool = Field(
        True,
        description="False: compiled on a host that could not run it (a NEFF without an Inferentia device); the "
        "first load on the device checks it against the reference outputs stored beside it.",
    )


class TracedTensor(_Record):
    name: str
    dtype: str
    dims: list[int] = Field(description="-1 where an axis varies.")
    axes: list[str | None] = Field(description="Which named axis (batch, frames, ...) each dimension is.")


class ComponentArtifacts(_Record):
    files: list[ArtifactFile]
    fingerprint: str = Field(description="sha256 of checkpoint, spec, target, versions and the traceable code.")
    max_relative_error: float | None = Field(
        description="Largest error of a reloaded artifact against the module; None where the build could not run it."
    )
    inputs: list[TracedTensor]
    outputs: list[TracedTensor]


class CheckpointInfo(_Record):
    source: str = Field(description="What MODEL named: random-tiny, a directory or a hub id.")
    path: str | None = Field(description="The directory transformers loaded it from.")
    fingerprint: str


class ManifestRecord(_Record):
    """``manifest.json``: written by ``blip_build`` after every artifact is verified, read by the stubs."""

    format: int = Field(description=f"{MANIFEST_FORMAT}; another format is refused (rebuild).")
    created: str
    checkpoint: CheckpointInfo
    target: TargetInfo
    spec: dict[str, Any] = Field(description="BlipSpec.to_dict() of the spec the artifacts were traced for.")
    components: dict[str, ComponentArtifacts]
    versions: dict[str, str] = Field(description="python, torch, transformers (and torch_neuronx) of the build.")


@dataclass(frozen=True)
class Manifest:
    """The manifest of one target directory: the record, and where its files are."""

    directory: Path
    record: ManifestRecord

    @property
    def spec(self) -> BlipSpec:
        return BlipSpec.from_dict(self.record.spec)

    @property
    def target_name(self) -> str:
        return self.record.target.name

    @property
    def target(self) -> Target:
        """The target the artifacts were built for, with its build settings (precision, static shapes)."""
        return get_target(self.target_name).from_description(self.record.target)

    @property
    def checkpoint_location(self) -> str:
        """Where transformers can load the very checkpoint that was built: its directory, else its hub id."""
        return self.record.checkpoint.path or self.record.checkpoint.source

    @property
    def precision(self) -> str:
        return self.record.target.precision

    def artifact_files(self, component: str) -> list[tuple[dict[str, int], Path]]:
        """(axis sizes, path) of each artifact of ``component``; sizes are empty for a shape-polymorphic one."""
        return [(entry.sizes, self.directory / entry.file) for entry in self.record.components[component].files]

    def unverified_files(self, component: str) -> set[Path]:
        """The artifacts of ``component`` the build could not run, which the first load must verify."""
        return {self.directory / entry.file for entry in self.record.components[component].files if not entry.verified}

    @property
    def processor_dir(self) -> Path:
        return self.directory / PROCESSOR_DIR


def write_manifest(directory: Path, record: ManifestRecord) -> Manifest:
    """Write ``manifest.json`` atomically (a reader never sees half of one)."""
    path = directory / MANIFEST
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(record.model_dump_json(indent=2) + "\n")
    os.replace(temporary, path)
    return Manifest(directory=directory, record=record)


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"no {MANIFEST} in {directory}: run `make build-artifacts TARGET=...` first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise ArtifactError(
            f"{path} has format {found!r}; this code reads format {MANIFEST_FORMAT}: rebuild with "
            "`make build-artifacts`"
        )
    try:
        record = ManifestRecord.model_validate(data)
    except ValidationError as error:
        raise ArtifactError(one_line(error, str(path)) + ": rebuild with `make build-artifacts`") from None
    return Manifest(directory=directory, record=record)


def verify_artifact_files(manifest: Manifest, component: str, target: str) -> list[tuple[dict[str, int], Path]]:
    """Refuse artifacts built for another target, missing, or whose bytes differ from the manifest's sha256."""
    if manifest.target_name != target:
        raise ArtifactError(
            f"{manifest.directory} holds {manifest.target_name!r} artifacts; this model is configured for {target!r}"
        )
    entry = manifest.record.components.get(component)
    if entry is None or not entry.files:
        raise ArtifactError(f"manifest in {manifest.directory} has no {component!r} artifact")
    for file in entry.files:
        path = manifest.directory / file.file
        if not path.is_file():
            raise ArtifactError(f"artifact {path} is missing")
        digest = sha256_file(path)
        if digest != file.sha256:
            raise ArtifactError(f"artifact {path} has sha256 {digest[:12]}..., the manifest says {file.sha256[:12]}...")
    return manifest.artifact_files(component)


def check_config_matches(manifest: Manifest, component: str, model_config: dict[str, Any]) -> None:
    """Refuse to serve artifacts built for another spec than the config's: a stale build after a spec change.

    ``model_config`` is the JSON config Triton hands to ``initialize``; its tensors must equal, by name, dtype
    and dims, the tensors of the spec the artifacts were traced for.
    """
    inputs, outputs = manifest.spec.model_tensors(component)
    for kind, tensors in (("input", inputs), ("output", outputs)):
        declared = {
            entry["name"]: (entry.get("data_type"), [int(d) for d in entry.get("dims", [])])
            for entry in model_config.get(kind, [])
        }
        built = {t.name: (t.triton_dtype, list(t.dims)) for t in tensors}
        if declared != built:
            differences = [
                f"{name}: config {declared.get(name, 'absent')}, artifacts {built.get(name, 'absent')}"
                for name in sorted(declared.keys() | built.keys())
                if declared.get(name) != built.get(name)
            ]
            raise ArtifactError(
                f"{component}: the config's {kind}s do not match the artifacts in {manifest.directory} "
                f"({'; '.join(differences)}): rebuild with `make build-artifacts TARGET={manifest.target_name}`"
            )
