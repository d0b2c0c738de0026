"""The shape a newcomer relies on: a torch-free contract for callers, and target names compared in one place."""

from __future__ import annotations

import ast
import subprocess
import sys

from blip_serving.targets import TARGET_NAMES, TARGETS, get_target
from blip_serving.targets.base import TargetInfo
from tests.conftest import ROOT

SOURCE_DIRS = ("blip_serving", "build", "client", "benchmarks", "contract", "model_repository")


def _imported(modules: str, heavy: set[str]) -> str:
    code = (
        f"import sys, {modules}\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(heavy)!r})\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_client_and_api_tier_import_no_torch_transformers_or_serving_code() -> None:
    client = (
        "blip_contract, blip_client, blip_client.client, blip_client.async_client, blip_client.router, blip_client.cli"
    )
    stack = {"torch", "transformers", "tokenizers", "blip_serving", "blip_build"}
    assert _imported(client, stack | {"PIL"}) == "", "the client decodes no image and loads no model"
    api = "blip_api, blip_api.app, blip_api.settings, blip_api.__main__, blip_events.service"
    # The API tier decodes thumbnails for the change gate (Pillow), and nothing of the model stack.
    assert _imported(api, stack) == "", "imported by the API tier"


def _target_name_comparisons(path) -> list[str]:
    """``x == "gpu"``, ``x in ("cpu", "neuron")`` and the like: string constants naming a target in a comparison."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Compare):
            continue
        for operand in [node.left, *node.comparators]:
            values = operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else [operand]
            names = [v.value for v in values if isinstance(v, ast.Constant) and v.value in TARGET_NAMES]
            if names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} compares {names}")
    return found


def test_no_code_outside_the_target_modules_compares_a_target_name() -> None:
    targets_dir = ROOT / "blip_serving" / "targets"
    files = [p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py") if targets_dir not in p.parents]
    assert len(files) > 30
    assert [hit for path in files for hit in _target_name_comparisons(path)] == []


def test_the_registry_maps_each_name_to_its_own_module() -> None:
    assert TARGET_NAMES == ("cpu", "gpu", "neuron")
    for name, target in TARGETS.items():
        assert target.name == name and target.__module__ == f"blip_serving.targets.{name}"
        assert get_target(name) is target
        info = TargetInfo(name=name, device="cpu", precision="fp32", compiler_args=[], static_shapes=True)
        described = target.from_description(info).describe()
        assert described.name == name and described.static_shapes


def test_model_repository_readme_shows_what_the_generator_writes() -> None:
    from transformers import BlipConfig

    from blip_serving.model_config import ensemble_config, python_model_config, render
    from blip_serving.spec import COMPONENT_NAMES, PUBLIC_MODEL, BlipSpec

    spec = BlipSpec.from_model_config(BlipConfig(), max_length=21, yes_token_id=2748, no_token_id=2053)
    readme = (ROOT / "model_repository" / "README.md").read_text()
    blocks = [block.split("```", 1)[0] for block in readme.split("```protobuf\n")[1:]]
    assert blocks == [
        render(ensemble_config(spec, PUBLIC_MODEL, COMPONENT_NAMES)),
        render(python_model_config(spec, "image_encoder", "cpu", "../artifacts/cpu/1")),
    ]
