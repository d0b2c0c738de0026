"""The layers in pyproject.toml hold: import-linter passes on the tree, and fails on an import that goes up a layer.

The failing cases run on a copy of the packages with one import added, so the check is seen to bite, not only to
pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Where each root package lives in the checkout (pyproject's packages.find `where`).
SOURCE_ROOTS = (".", "contract", "build", "client", "benchmarks")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(tree / root) for root in SOURCE_ROOTS))
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_of_the_packages(destination: Path) -> Path:
    for root in SOURCE_ROOTS:
        for package in (ROOT / root).glob("blip_*"):
            if package.is_dir():
                shutil.copytree(
                    package, destination / root / package.name, ignore=shutil.ignore_patterns("__pycache__")
                )
    shutil.copy(ROOT / "pyproject.toml", destination / "pyproject.toml")
    return destination


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 8 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "added", "broken"),
    [
        # The spec, low in serving, reaching for the supervisor, near the top.
        ("blip_serving/spec.py", "import blip_serving.supervisor", "blip_serving.spec -> blip_serving.supervisor"),
        # A layout asking the config generator, which sits above it (the cycle this layering removed).
        (
            "blip_serving/layouts/ensemble.py",
            "from blip_serving.model_config import python_model_config",
            "blip_serving.layouts.ensemble -> blip_serving.model_config",
        ),
        # The client must never need the serving side.
        ("client/blip_client/wire.py", "import blip_serving.spec", "blip_client.wire -> blip_serving.spec"),
        # Nor may the API tier's image carry torch.
        ("client/blip_api/settings.py", "import torch", "blip_api.settings -> torch"),
        # The event layer's rules sit below its store: the state machine may not reach for SQL.
        ("client/blip_events/machine.py", "import blip_events.store", "blip_events.machine -> blip_events.store"),
        # The event layer never needs the router (the API hands it an inference callable).
        ("client/blip_events/service.py", "import blip_client.router", "blip_events.service -> blip_client.router"),
        # The client decodes no image.
        ("client/blip_client/wire.py", "import PIL", "blip_client.wire -> PIL"),
        # The light client distribution carries no server stack.
        ("client/blip_client/router.py", "import fastapi", "blip_client.router -> fastapi"),
        ("contract/blip_contract/logs.py", "import sqlalchemy", "blip_contract.logs -> sqlalchemy"),
    ],
)
def test_an_import_that_goes_up_a_layer_breaks_the_contracts(tmp_path, module, added, broken) -> None:
    tree = copy_of_the_packages(tmp_path)
    where = tree / module
    where.write_text(where.read_text() + f"\n{added}  # planted by the test\n")
    result = lint_imports(tree)
    assert result.returncode != 0, f"{added} in {module} was not caught:\n{result.stdout}"
    assert "BROKEN" in result.stdout and broken in result.stdout, result.stdout
