"""Build, verify and describe the traced artifacts of one target; load them back for serving.

Layout of ``artifacts/<target>/``: one ``<component>.pt`` per component, ``processor/`` (the checkpoint's own
image processor and tokenizer) and ``manifest.json`` (checkpoint, spec, target, sha256 of every artifact,
library versions). A component is rebuilt only when its fingerprint (checkpoint, spec, target, versions)
changed or ``force`` is set; every fresh artifact is reloaded from disk and compared with the original module.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blip_serving.errors import ArtifactError
from blip_serving.spec import COMPONENT_NAMES, BlipSpec

MANIFEST = "manifest.json"
PROCESSOR_DIR = "processor"
MANIFEST_FORMAT = 1

Progress = Callable[[str], None]


class VerificationError(ArtifactError):
    """A reloaded artifact does not reproduce the original module."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_fingerprint(path: str | None, source: str) -> str:
    """Content hash of a local checkpoint's files (weights, config, tokenizer); the id for a hub checkpoint."""
    digest = hashlib.sha256()
    if path is None:
        digest.update(source.encode())
        return digest.hexdigest()
    for file in sorted(Path(path).iterdir()):
        if file.is_file():
            digest.update(file.name.encode())
            digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def resolve_max_length(model: Any) -> int:
    """The answer length (bos included) that ``BlipForQuestionAnswering.generate`` uses with default settings.

    ``generate`` delegates to ``text_decoder.generate`` with a one-token prompt ([DEC]). transformers 5 then
    generates ``max_new_tokens`` if set, else ``max_length`` if set, else 20 new tokens capped at
    ``max_position_embeddings``. Only greedy search is served: other settings stop the build.
    """
    config = model.text_decoder.generation_config
    if (config.num_beams or 1) != 1 or config.do_sample:
        raise ArtifactError(
            f"checkpoint's generation config asks for num_beams={config.num_beams}, do_sample={config.do_sample}; "
            "this server implements greedy search only"
        )
    for name, neutral in (("repetition_penalty", 1.0), ("no_repeat_ngram_size", 0), ("min_new_tokens", None)):
        value = getattr(config, name, None)
        if value not in (None, neutral):
            raise ArtifactError(f"checkpoint's generation config sets {name}={value}, which is not served")
    if config.max_new_tokens is not None:
        return int(config.max_new_tokens) + 1
    if config.max_length is not None:
        return int(config.max_length)
    return min(20 + 1, model.config.text_config.max_position_embeddings)


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of one target directory."""

    directory: Path
    data: dict[str, Any]

    @property
    def spec(self) -> BlipSpec:
        return BlipSpec.from_dict(self.data["spec"])

    @property
    def target(self) -> str:
        return self.data["target"]["name"]

    @property
    def static_batch(self) -> dict[str, int]:
        return self.data["target"].get("static_batch", {})

    @property
    def precision(self) -> str:
        return self.data["target"]["precision"]

    def artifact_path(self, component: str) -> Path:
        return self.directory / self.data["components"][component]["file"]

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
        raise ArtifactError(f"{path} has format {data.get('format')!r}; this code reads format {MANIFEST_FORMAT}")
    return Manifest(directory=directory, data=data)


def verify_artifact_file(manifest: Manifest, component: str, target: str) -> Path:
    """Refuse an artifact built for another target, missing, or whose bytes differ from the manifest's sha256."""
    if manifest.target != target:
        raise ArtifactError(
            f"{manifest.directory} holds {manifest.target!r} artifacts; this model is configured for {target!r}"
        )
    entry = manifest.data["components"].get(component)
    if entry is None:
        raise ArtifactError(f"manifest in {manifest.directory} has no {component!r} artifact")
    path = manifest.artifact_path(component)
    if not path.is_file():
        raise ArtifactError(f"artifact {path} is missing")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ArtifactError(f"artifact {path} has sha256 {digest[:12]}..., the manifest says {entry['sha256'][:12]}...")
    return path


def check_config_matches(manifest: Manifest, component: str, model_config: dict[str, Any]) -> None:
    """Refuse to serve artifacts built for another spec than the config's: a stale build after a spec change.

    ``model_config`` is the JSON config Triton hands to ``initialize``; its tensors must equal, by name, dtype
    and dims, the tensors of the spec the artifacts were traced for.
    """
    expected = manifest.spec.components[component]
    for kind, tensors in (("input", expected.inputs), ("output", expected.outputs)):
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
                f"({'; '.join(differences)}): rebuild with `make build-artifacts TARGET={manifest.target}`"
            )


def _relative_error(expected: Any, actual: Any) -> float:
    expected, actual = expected.float().cpu(), actual.float().cpu()
    if expected.shape != actual.shape:
        raise VerificationError(f"artifact returned shape {tuple(actual.shape)}, the module {tuple(expected.shape)}")
    scale = float(expected.abs().max()) or 1.0
    return float((expected - actual).abs().max()) / scale


def _versions() -> dict[str, str]:
    import torch
    import transformers

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    try:
        import torch_neuronx  # type: ignore[import-not-found]

        versions["torch_neuronx"] = getattr(torch_neuronx, "__version__", "unknown")
    except ImportError:
        pass
    return versions


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def build_target(
    checkpoint: Any,
    spec: BlipSpec,
    target: Any,
    out_dir: Path,
    *,
    force: bool = False,
    saved_checkpoint: str | None = None,
    progress: Progress = print,
) -> Manifest:
    """Trace, save, reload and verify every component of ``checkpoint`` for ``target`` into ``out_dir``."""
    import torch

    from blip_serving.components import COMPILE_WRAPPERS
    from blip_serving.targets import load_artifact, trace

    out_dir.mkdir(parents=True, exist_ok=True)
    versions = _versions()
    checkpoint_id = checkpoint_fingerprint(checkpoint.path, checkpoint.source)
    try:
        previous = read_manifest(out_dir).data.get("components", {})
    except ArtifactError:
        previous = {}

    checkpoint.processor.save_pretrained(out_dir / PROCESSOR_DIR)
    components: dict[str, Any] = {}
    for index, name in enumerate(COMPONENT_NAMES, start=1):
        step = f"[{index}/{len(COMPONENT_NAMES)}] {name}"
        fingerprint = hashlib.sha256(
            json.dumps(
                {
                    "checkpoint": checkpoint_id,
                    "spec": spec.to_dict(),
                    "target": target.describe(),
                    "versions": versions,
                    # The wrapper's own code: a changed wrapper must never be served from a stale artifact.
                    "wrapper": inspect.getsource(COMPILE_WRAPPERS[name]),
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()
        artifact = out_dir / spec.components[name].artifact_name
        old = previous.get(name)
        if (
            not force
            and old is not None
            and old.get("fingerprint") == fingerprint
            and artifact.is_file()
            and sha256_file(artifact) == old.get("sha256")
        ):
            progress(f"{step}: up to date ({artifact.name}), skipped; FORCE=1 rebuilds")
            components[name] = old
            continue

        started = time.perf_counter()
        module = COMPILE_WRAPPERS[name](checkpoint.model).eval().to(target.device, target.float_dtype)
        static = target.static_batch.get(name)

        def inputs(batch: int, seed: int, name: str = name, static: int | None = static) -> tuple[Any, ...]:
            tensors = spec.example_inputs(name, batch=static or batch, seed=seed)
            return tuple(
                t.to(target.device, target.float_dtype) if t.is_floating_point() else t.to(target.device)
                for t in tensors
            )

        progress(f"{step}: tracing for {target.name} ({target.precision})")
        traced = trace(target, module, inputs(2, seed=0))
        temporary = artifact.with_suffix(".pt.tmp")
        torch.jit.save(traced, str(temporary))
        del traced
        reloaded = load_artifact(target.name, str(temporary), target.device)
        worst = 0.0
        for batch, seed in ((3, 1), (1, 2)):
            example = inputs(batch, seed)
            with torch.inference_mode():
                worst = max(worst, _relative_error(module(*example), reloaded(*example)))
        if worst > target.tolerance:
            temporary.unlink(missing_ok=True)
            raise VerificationError(
                f"{name}: reloaded artifact differs from the original module by {worst:.2e} (relative), "
                f"above the {target.name} tolerance {target.tolerance:.0e}; nothing was saved"
            )
        os.replace(temporary, artifact)
        components[name] = {
            "file": artifact.name,
            "sha256": sha256_file(artifact),
            "bytes": artifact.stat().st_size,
            "fingerprint": fingerprint,
            "max_relative_error": worst,
            "inputs": [vars(t) | {"dims": list(t.dims)} for t in spec.components[name].traced_inputs],
            "outputs": [vars(t) | {"dims": list(t.dims)} for t in spec.components[name].traced_outputs],
        }
        progress(
            f"{step}: saved {artifact.name} ({artifact.stat().st_size / 2**20:.1f} MiB) in "
            f"{time.perf_counter() - started:.1f}s, verified (max relative error {worst:.1e})"
        )

    data = {
        "format": MANIFEST_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "checkpoint": {"source": checkpoint.source, "path": checkpoint.path, "fingerprint": checkpoint_id},
        "saved_checkpoint": saved_checkpoint,
        "target": target.describe(),
        "spec": spec.to_dict(),
        "components": components,
        "versions": versions,
    }
    _atomic_write_text(out_dir / MANIFEST, json.dumps(data, indent=2) + "\n")
    return Manifest(directory=out_dir, data=data)
