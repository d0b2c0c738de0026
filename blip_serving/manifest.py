"""The manifest of one target's artifacts, read where they are served and written by the build.

``artifacts/<target>/manifest.json`` records the checkpoint, the spec, the target and its settings, and the sha256
of every artifact. The stub reads it in ``initialize`` and refuses what it must not serve: another target's
artifacts, a truncated copy, or configs from another spec. No torch here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blip_serving.errors import ArtifactError
from blip_serving.spec import BlipSpec
from blip_serving.targets import Target, get_target

MANIFEST = "manifest.json"
PROCESSOR_DIR = "processor"
MANIFEST_FORMAT = 2


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of one target directory."""

    directory: Path
    data: dict[str, Any]

    @property
    def spec(self) -> BlipSpec:
        return BlipSpec.from_dict(self.data["spec"])

    @property
    def target_name(self) -> str:
        return self.data["target"]["name"]

    @property
    def target(self) -> Target:
        """The target the artifacts were built for, with its build settings (precision, static shapes)."""
        return get_target(self.target_name).from_description(self.data["target"])

    @property
    def checkpoint_location(self) -> str:
        """Where transformers can load the very checkpoint that was built: its directory, else its hub id."""
        checkpoint = self.data["checkpoint"]
        return checkpoint.get("path") or checkpoint["source"]

    @property
    def precision(self) -> str:
        return self.data["target"]["precision"]

    def artifact_files(self, component: str) -> list[tuple[dict[str, int], Path]]:
        """(axis sizes, path) of each artifact of ``component``; sizes are empty for a shape-polymorphic one."""
        return [
            (entry["sizes"], self.directory / entry["file"]) for entry in self.data["components"][component]["files"]
        ]

    @property
    def processor_dir(self) -> Path:
        return self.directory / PROCESSOR_DIR


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"no {MANIFEST} in {directory}: run `make build-artifacts TARGET=...` first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path} is not valid JSON: {error}") from error
    if data.get("format") != MANIFEST_FORMAT:
        raise ArtifactError(
            f"{path} has format {data.get('format')!r}; this code reads format {MANIFEST_FORMAT}: rebuild with "
            "`make build-artifacts`"
        )
    return Manifest(directory=directory, data=data)


def verify_artifact_files(manifest: Manifest, component: str, target: str) -> list[tuple[dict[str, int], Path]]:
    """Refuse artifacts built for another target, missing, or whose bytes differ from the manifest's sha256."""
    if manifest.target_name != target:
        raise ArtifactError(
            f"{manifest.directory} holds {manifest.target_name!r} artifacts; this model is configured for {target!r}"
        )
    entry = manifest.data["components"].get(component)
    if entry is None or not entry.get("files"):
        raise ArtifactError(f"manifest in {manifest.directory} has no {component!r} artifact")
    for file in entry["files"]:
        path = manifest.directory / file["file"]
        if not path.is_file():
            raise ArtifactError(f"artifact {path} is missing")
        digest = sha256_file(path)
        if digest != file["sha256"]:
            raise ArtifactError(
                f"artifact {path} has sha256 {digest[:12]}..., the manifest says {file['sha256'][:12]}..."
            )
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
