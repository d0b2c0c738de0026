"""Build time: trace, save, reload and verify the artifacts of one target, and write their manifest.

Layout of ``artifacts/<target>/``: one ``<component>.pt`` per component (a static-shape build has one
``<component>.<axis><size>....pt`` per shape bucket instead), ``processor/`` (the checkpoint's own image processor
and tokenizer) and ``manifest.json`` (checkpoint, spec, target, sha256 of every artifact,
library versions). A component is rebuilt only when its fingerprint (checkpoint, spec, target, versions)
changed or ``force`` is set; every fresh artifact is reloaded from disk and compared with the original module.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blip_serving.errors import ArtifactError
from blip_serving.manifest import (
    MANIFEST_FORMAT,
    PROCESSOR_DIR,
    ArtifactFile,
    CheckpointInfo,
    ComponentArtifacts,
    Manifest,
    ManifestRecord,
    TracedTensor,
    read_manifest,
    sha256_file,
    write_manifest,
)
from blip_serving.spec import BATCH, COMPONENT_NAMES, BlipSpec
from blip_serving.stub.references import reference_path, relative_error, save_reference
from blip_serving.targets import Target

Progress = Callable[[str], None]


class VerificationError(ArtifactError):
    """A reloaded artifact does not reproduce the original module."""


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


def yes_no_token_ids(tokenizer: Any) -> tuple[int, int]:
    """The ids of "yes" and "no", which SCORES compares; each must be one token of the vocabulary."""
    ids = []
    for word in ("yes", "no"):
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1 or pieces[0] == tokenizer.unk_token_id:
            raise ArtifactError(f"the tokenizer splits {word!r} into {pieces}; SCORES needs it as one known token")
        ids.append(int(pieces[0]))
    return ids[0], ids[1]


def _link(source: Path, destination: Path) -> None:
    """A hard link where the file system has them (EFS and ext4 do), else a copy."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _artifact_file(artifact: Path, sizes: dict[str, int], *, verified: bool) -> ArtifactFile:
    return ArtifactFile(
        sizes=sizes, file=artifact.name, sha256=sha256_file(artifact), bytes=artifact.stat().st_size, verified=verified
    )


def _versions() -> dict[str, str]:
    import torch
    import transformers

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    return versions


def _distinct(shapes: list[dict[str, int]]) -> list[dict[str, int]]:
    return [dict(key) for key in dict.fromkeys(tuple(sorted(shape.items())) for shape in shapes)]


def _tensor_entry(tensor: Any) -> TracedTensor:
    return TracedTensor(name=tensor.name, dtype=tensor.dtype, dims=list(tensor.dims), axes=list(tensor.axes))


def build_target(
    checkpoint: Any,
    spec: BlipSpec,
    target: Target,
    out_dir: Path,
    *,
    previous_dir: Path | None = None,
    force: bool = False,
    progress: Progress = print,
) -> Manifest:
    """Trace, save, reload and verify every component of ``checkpoint`` for ``target`` into ``out_dir``.

    ``previous_dir``: the newest version of the target. A component whose fingerprint and files are unchanged there
    is linked from it (hard links: the versions share the bytes, and neither is ever written again) instead of
    traced anew."""
    import torch

    from blip_build.traceable import TRACEABLE_MODULES

    out_dir.mkdir(parents=True, exist_ok=True)
    versions = _versions() | target.sdk_versions()  # the fingerprint changes with the SDK too
    checkpoint_id = checkpoint_fingerprint(checkpoint.path, checkpoint.source)
    try:
        previous = dict(read_manifest(previous_dir).record.components) if previous_dir else {}
    except ArtifactError:
        previous = {}

    device = target.build_device
    checkpoint.processor.save_pretrained(out_dir / PROCESSOR_DIR)
    components: dict[str, ComponentArtifacts] = {}
    for index, name in enumerate(COMPONENT_NAMES, start=1):
        step = f"[{index}/{len(COMPONENT_NAMES)}] {name}"
        fingerprint = hashlib.sha256(
            json.dumps(
                {
                    "checkpoint": checkpoint_id,
                    "spec": spec.to_dict(),
                    "target": target.describe().model_dump(),
                    "versions": versions,
                    # The traceable module's own code: a changed one must never be served from a stale artifact.
                    "traceable_module": inspect.getsource(inspect.getmodule(TRACEABLE_MODULES[name])),
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()
        component = spec.components[name]
        # A static build traces every bucket; a polymorphic one traces once and is verified on every bucket.
        variants = list(component.shape_buckets) if target.static_shapes else [{}]
        files = [out_dir / component.artifact_name(sizes) for sizes in variants]
        old = previous.get(name)
        if (
            not force
            and previous_dir is not None
            and old is not None
            and old.fingerprint == fingerprint
            and [f.file for f in old.files] == [f.name for f in files]
            and all(
                (previous_dir / f.name).is_file() and sha256_file(previous_dir / f.name) == e.sha256
                for f, e in zip(files, old.files)
            )
        ):
            for artifact in files:
                _link(previous_dir / artifact.name, artifact)
                if reference_path(previous_dir / artifact.name).is_file():
                    _link(reference_path(previous_dir / artifact.name), reference_path(artifact))
            progress(
                f"{step}: unchanged since {previous_dir.name}, linked ({len(files)} artifact(s)); FORCE=1 rebuilds"
            )
            components[name] = old
            continue

        started = time.perf_counter()
        module = TRACEABLE_MODULES[name](checkpoint.model, spec).eval().to(device, target.float_dtype)

        def inputs(sizes: dict[str, int], seed: int, name: str = name) -> tuple[Any, ...]:
            return tuple(
                t.to(device, target.float_dtype) if t.is_floating_point() else t.to(device)
                for t in spec.example_inputs(name, sizes, seed=seed)
            )

        entries, worst, unverified = [], 0.0, 0
        for sizes, artifact in zip(variants, files):
            shape = ", ".join(f"{axis} {size}" for axis, size in sorted(sizes.items())) or "any shape"
            progress(f"{step}: tracing for {target.name} ({target.precision}, {shape})")
            traced = target.trace(module, inputs(sizes, seed=0))
            temporary = artifact.with_suffix(".pt.tmp")
            torch.jit.save(traced, str(temporary))
            del traced
            # A static artifact is checked at its own shape; a polymorphic one at every bucket and odd batches.
            checks = [sizes] if sizes else _distinct([*component.shape_buckets, {BATCH: 3}, {BATCH: 1}])
            if not target.runs_here:
                # Compiled for a device this host lacks: keep inputs and the module's outputs beside the artifact;
                # its first load on the device compares (blip_serving.stub.references) before serving.
                example = inputs(checks[0], 1)
                with torch.inference_mode():
                    expected = module(*example)
                os.replace(temporary, artifact)
                save_reference(artifact, example, expected)
                entries.append(_artifact_file(artifact, sizes, verified=False))
                unverified += 1
                continue
            reloaded = target.load(str(temporary), device)
            error = 0.0
            for seed, check in enumerate(checks, start=1):
                example = inputs(check, seed)
                with torch.inference_mode():
                    error = max(error, relative_error(module(*example), reloaded(*example)))
            if error > target.tolerance:
                temporary.unlink(missing_ok=True)
                raise VerificationError(
                    f"{name} ({shape}): reloaded artifact differs from the original module by {error:.2e} "
                    f"(relative), above the {target.name} tolerance {target.tolerance:.0e}; nothing was saved"
                )
            os.replace(temporary, artifact)
            worst = max(worst, error)
            entries.append(_artifact_file(artifact, sizes, verified=True))
        components[name] = ComponentArtifacts(
            files=entries,
            fingerprint=fingerprint,
            max_relative_error=None if unverified else worst,
            inputs=[_tensor_entry(t) for t in component.traced_inputs],
            outputs=[_tensor_entry(t) for t in component.traced_outputs],
        )
        megabytes = sum(e.bytes for e in entries) / 2**20
        checked = (
            f"not run here (no {target.name} device): {unverified} kept with reference outputs, which their first "
            "load on the device checks"
            if unverified
            else f"verified on {len(checks) * len(entries)} shape(s) (max relative error {worst:.1e})"
        )
        progress(
            f"{step}: saved {len(entries)} artifact(s) ({megabytes:.1f} MiB) in {time.perf_counter() - started:.1f}s, {checked}"
        )

    record = ManifestRecord(
        format=MANIFEST_FORMAT,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        checkpoint=CheckpointInfo(source=checkpoint.source, path=checkpoint.path, fingerprint=checkpoint_id),
        target=target.describe(),
        spec=spec.to_dict(),
        components=components,
        versions=versions,
    )
    return write_manifest(out_dir, record)
