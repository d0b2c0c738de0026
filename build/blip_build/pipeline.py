"""``build(model, target, ...) -> Manifest``: the whole artifact build as one library call.

The command line (``blip_build.cli``), the tests, the benchmarks and the GPU check call this; it loads the
checkpoint, derives the spec from it, traces and verifies every component for the target, and writes the
manifest and each model's ``configs/<target>.pbtxt``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from blip_build.artifacts import Progress, build_target, resolve_max_length, yes_no_token_ids
from blip_build.checkpoints import RANDOM_MODELS, load_checkpoint, pixel_normalization, pixel_resize
from blip_serving.deployment import Deployment
from blip_serving.layouts import LAYOUT_NAMES
from blip_serving.manifest import Manifest
from blip_serving.model_config import write_repository_configs
from blip_serving.spec import (
    DEFAULT_IMAGE_BATCH_BUCKETS,
    DEFAULT_MAX_QUESTIONS,
    DEFAULT_QUESTION_BATCH_BUCKETS,
    DEFAULT_QUESTION_BUCKETS,
    BlipSpec,
)
from blip_serving.targets import Target, resolve_target
from blip_serving.versions import DEFAULT_KEEP, VersionStore


def _quiet() -> None:
    """transformers' mask helpers warn about shape checks under tracing; every artifact is verified on other
    batch sizes and inputs after reloading, which is what would catch a trace that did not generalize."""
    import torch
    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def build(
    model: str,
    target: str | Target = "cpu",
    *,
    artifacts: Path = Path("artifacts"),
    repository: Path = Path("model_repository"),
    fp16: bool = False,
    compiler_args: str | None = None,
    static_shapes: bool = False,
    question_buckets: tuple[int, ...] = DEFAULT_QUESTION_BUCKETS,
    image_batch_buckets: tuple[int, ...] = DEFAULT_IMAGE_BATCH_BUCKETS,
    question_batch_buckets: tuple[int, ...] = DEFAULT_QUESTION_BATCH_BUCKETS,
    max_questions: int = DEFAULT_MAX_QUESTIONS,
    deployment: Deployment | None = None,
    force: bool = False,
    keep_versions: int = DEFAULT_KEEP,
    progress: Progress = lambda line: None,
) -> Manifest:
    """Build ``model`` (a checkpoint directory, a hub id, ``random-tiny`` or ``random-base``) for ``target``.

    Artifacts go to a new, immutable version ``artifacts/<target>/<N>/`` (``blip_serving.versions``): built in a
    staging directory, numbered only once whole; a build identical to the newest version is that version, and the
    oldest beyond ``keep_versions`` are removed. Configs go to ``repository/<model>/configs/<config>.pbtxt`` for every
    layout (``<target>`` for the ensemble, ``colocated-<target>``). A target
    given by name is resolved first, so a missing SDK or GPU fails before anything is loaded or written.
    Raises ``TargetUnavailableError``, ``ArtifactError`` (verification included), ``OSError`` or ``ValueError``.
    """
    if isinstance(target, str):
        target = resolve_target(target, fp16=fp16, compiler_args=compiler_args, static_shapes=static_shapes)
    deployment = deployment or Deployment()
    _quiet()
    progress(f"loading checkpoint {model}")
    checkpoint = load_checkpoint(model, random_dir=artifacts / "checkpoints")
    yes, no = yes_no_token_ids(checkpoint.processor.tokenizer)
    spec = BlipSpec.from_model_config(
        checkpoint.model.config,
        max_length=resolve_max_length(checkpoint.model),
        yes_token_id=yes,
        no_token_id=no,
        question_buckets=question_buckets,
        image_batch_buckets=image_batch_buckets,
        question_batch_buckets=question_batch_buckets,
        max_questions=max_questions,
        pixel_normalization=pixel_normalization(
            checkpoint.processor, getattr(checkpoint.model.config.vision_config, "num_channels", 3)
        ),
        pixel_resize=pixel_resize(
            checkpoint.processor.image_processor.to_dict(), checkpoint.model.config.vision_config.image_size
        ),
    )
    progress(
        f"spec: image {spec.image_height}x{spec.image_width} -> {spec.image_tokens} tokens x "
        f"{spec.vision_hidden_size}, frames batched by {list(spec.image_batch_buckets)}; questions in "
        f"{list(spec.question_buckets)}-token buckets x {spec.text_hidden_size}; answers up to "
        f"{spec.answer_tokens} tokens through buffers of {list(spec.decode_lengths)}; vocabulary "
        f"{spec.vocab_size}; yes/no token ids {yes}/{no}"
    )
    store = VersionStore(artifacts / target.name)
    newest = store.latest()
    staging = store.staging()
    try:
        previous = store.path(newest) if newest else None
        built = build_target(checkpoint, spec, target, staging, previous_dir=previous, force=force, progress=progress)
        if newest and not force and same_content(built, store.manifest(newest)):
            store.discard(staging)
            version = newest
            progress(f"version {version}: this build's checkpoint, spec, target and code are version {version}'s")
        else:
            version = store.commit(staging)
            progress(f"version {version}: {store.path(version)}")
    except BaseException:
        store.discard(staging)
        raise
    out_dir = store.path(version)
    manifest = store.manifest(version)
    for removed in store.prune(keep_versions):
        progress(f"version {removed} removed (keeping the newest {keep_versions})")
    # Every layout's configs over the same artifacts, so `make serve LAYOUT=...` needs no rebuild; the deployment's
    # instances, threads and cores apply to each.
    for layout in LAYOUT_NAMES:
        write_repository_configs(spec, target.name, repository, out_dir, deployment.replaced(layout=layout))
    del checkpoint
    return manifest


def same_content(built: Manifest, existing: Manifest) -> bool:
    """Whether two builds are the same model: the same checkpoint and, per component, the same fingerprint (which
    covers spec, target, versions and code) and files."""
    a, b = built.record, existing.record
    return a.checkpoint.fingerprint == b.checkpoint.fingerprint and {
        name: (c.fingerprint, [f.sha256 for f in c.files]) for name, c in a.components.items()
    } == {name: (c.fingerprint, [f.sha256 for f in c.files]) for name, c in b.components.items()}


def is_random(model: str) -> bool:
    """Whether ``model`` names a checkpoint with random weights, made offline."""
    return model in RANDOM_MODELS
