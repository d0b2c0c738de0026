"""Command-line defaults come from ``BLIP_<NAME>`` only, and every Makefile variable reaches them under that name."""

from __future__ import annotations

import re
import subprocess

from blip_contract.env import env_default, env_flag
from tests.conftest import ROOT

SOURCES = ("blip_serving", "build", "client", "benchmarks", "contract")
# Set where the process runs (an image, a GPU machine), not on make's command line.
NOT_MAKE_VARIABLES = {"API_CONFIG", "STUB_PYTHON", "TRITON_ROOT", "MALLOC_TRIM"}


def names_read() -> set[str]:
    found = set()
    for source in SOURCES:
        for path in (ROOT / source).rglob("*.py"):
            found |= set(re.findall(r'env_(?:default|flag)\("([A-Z0-9_]+)"', path.read_text()))
    found |= {"STUB_PYTHON", "TRITON_ROOT", "MALLOC_TRIM"}  # read through named constants
    return found


def test_only_the_prefixed_name_counts(monkeypatch) -> None:
    monkeypatch.setenv("HOST_TYPE", "inf2.xlarge")
    monkeypatch.delenv("BLIP_HOST_TYPE", raising=False)
    assert env_default("HOST_TYPE", "local") == "local", "an unprefixed variable never leaks into a command"
    monkeypatch.setenv("BLIP_HOST_TYPE", "")
    assert env_default("HOST_TYPE", "local") == "local", "empty is unset"
    monkeypatch.setenv("BLIP_HOST_TYPE", "g5.xlarge")
    assert env_default("HOST_TYPE", "local") == "g5.xlarge"
    for value, expected in (("1", True), ("yes", True), ("TRUE", True), ("0", False), ("no", False)):
        monkeypatch.setenv("BLIP_FORCE", value)
        assert env_flag("FORCE") is expected


def test_every_variable_a_command_reads_is_exported_by_the_makefile() -> None:
    text = (ROOT / "Makefile").read_text()
    listed = set(re.search(r"BLIP_VARIABLES := ((?:.*\\\n)*.*)", text).group(1).replace("\\", " ").split())
    assert names_read() - NOT_MAKE_VARIABLES <= listed, "a command reads a BLIP_ variable make never sets"
    shown = subprocess.run(
        ["make", "-s", "--eval", "show-env: ; @env", "show-env", "STATIC_SHAPES=1", "HOST_TYPE=inf2.xlarge"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert {"BLIP_STATIC_SHAPES=1", "BLIP_HOST_TYPE=inf2.xlarge", "BLIP_TARGET=cpu"} <= set(shown)
