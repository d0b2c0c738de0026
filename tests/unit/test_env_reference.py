"""docs/environment.md is what the code reads: a ``BLIP_`` variable read but not documented fails here."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import ROOT
from tests.unit.test_environment_settings import names_read

TOOL = ROOT / "tools" / "env_reference.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120)


def test_the_page_is_the_codes() -> None:
    result = run("--check")
    assert result.returncode == 0, result.stderr


def test_every_variable_the_commands_read_is_on_the_page() -> None:
    page = (ROOT / "docs" / "environment.md").read_text()
    assert all(f"`BLIP_{name}`" in page for name in names_read()), "the page misses a variable a command reads"
    for name in ("BLIP_API_TOKEN", "BLIP_DB_URL", "BLIP_STUB_PYTHON", "BLIP_LOG_JSON"):
        assert f"`{name}`" in page


def test_a_new_undocumented_read_fails(tmp_path) -> None:
    for folder in ("blip_serving", "build", "client", "benchmarks", "contract", "docs"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    planted = tmp_path / "client" / "blip_api" / "routes.py"
    planted.write_text(planted.read_text() + '\nLIMIT = env_default("PLANTED_SECRET_LIMIT")  # planted by the test\n')
    result = run("--check", "--root", str(tmp_path))
    assert result.returncode != 0 and "BLIP_PLANTED_SECRET_LIMIT" in result.stderr + result.stdout, result
    # A documented variable read somewhere new changes the page too (it lists where each is read).
    planted.write_text(planted.read_text().replace("PLANTED_SECRET_LIMIT", "HTTP_PORT"))
    moved = run("--check", "--root", str(tmp_path))
    assert moved.returncode != 0 and "blip_api.routes" in moved.stderr, moved.stderr
