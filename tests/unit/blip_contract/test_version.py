"""One version: the installed metadata's, printed by every command's ``--version``, in the OpenAPI document, and
the same in both distributions' ``pyproject.toml`` and the CHANGELOG's newest release."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from blip_contract.version import __version__
from tests.conftest import ROOT

COMMANDS = ("blip-api", "blip-serve", "blip-build", "blip-client")


def test_the_version_is_the_installed_distributions() -> None:
    assert __version__ == metadata.version("blip-vqa-triton")
    assert __version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_both_distributions_and_the_changelog_say_one_version() -> None:
    light = tomllib.loads((ROOT / "client" / "dist" / "pyproject.toml").read_text())["project"]["version"]
    assert light == __version__, "client/dist/pyproject.toml's version must follow pyproject.toml's"
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0] == __version__, f"the CHANGELOG's newest release is {releases[:1]}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_prints_the_version(command: str) -> None:
    path = Path(sys.executable).parent / command
    result = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{command} {__version__}"
