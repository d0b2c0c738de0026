"""Reference outputs for artifacts the build could not run: a NEFF compiled on a host without an Inferentia device.

The build keeps, beside each such artifact, example inputs and the eager module's outputs for them
(``<artifact>.reference.pt``); the first load on the device runs the artifact on those inputs and compares, with
the target's tolerance, before the model serves anything. An artifact marked unverified without a reference is
refused unless ``BLIP_ALLOW_UNVERIFIED=1`` says to serve it anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from blip_contract.env import env_flag
from blip_serving.errors import ArtifactError

ALLOW_UNVERIFIED = "ALLOW_UNVERIFIED"


def relative_error(expected: Any, actual: Any) -> float:
    """Largest absolute difference over the largest expected magnitude; the build and the first load use it."""
    expected, actual = expected.float().cpu(), actual.float().cpu()
    if expected.shape != actual.shape:
        raise ArtifactError(f"artifact returned shape {tuple(actual.shape)}, the module {tuple(expected.shape)}")
    scale = float(expected.abs().max()) or 1.0
    return float((expected - actual).abs().max()) / scale


def reference_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name.removesuffix(".pt") + ".reference.pt")


def save_reference(artifact: Path, inputs: tuple[torch.Tensor, ...], outputs: torch.Tensor) -> Path:
    path = reference_path(artifact)
    torch.save({"inputs": [t.detach().cpu() for t in inputs], "outputs": outputs.detach().cpu()}, path)
    return path


def check_reference(module: Any, artifact: Path, tolerance: float, device: str) -> float:
    """Run ``module`` (the loaded artifact) on its reference inputs; the relative error, or ``ArtifactError``."""
    path = reference_path(artifact)
    if not path.is_file():
        if env_flag(ALLOW_UNVERIFIED):
            return float("nan")
        raise ArtifactError(
            f"{artifact.name} was built on a host that could not run it and has no reference ({path.name}) to "
            f"verify it against: rebuild, or set BLIP_{ALLOW_UNVERIFIED}=1 to serve it unverified"
        )
    reference = torch.load(path, map_location="cpu", weights_only=True)
    inputs = [t.to(device) for t in reference["inputs"]]
    with torch.inference_mode():
        error = relative_error(reference["outputs"], module(*inputs))
    if error > tolerance:
        raise ArtifactError(
            f"{artifact.name} differs from the module it was compiled from by {error:.2e} (relative) on this "
            f"device, above the tolerance {tolerance:.0e}: it is not served"
        )
    return error
