"""The Makefile: ``make help`` lists every target; ``make lint`` reads every source folder, build/ included."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def declared_targets() -> list[str]:
    """Every rule of the Makefile that a person runs: the .PHONY list."""
    phony = re.search(r"^\.PHONY: (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert phony
    return phony.group(1).split()


def test_make_help_lists_every_target() -> None:
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    listed = {re.sub(r"\x1b\[[0-9;]*m", "", line).split()[0] for line in shown.stdout.splitlines() if line.strip()}
    assert set(declared_targets()) == listed, "a .PHONY target without a '## ' line, or one the help's pattern drops"
    assert "k8s-render" in listed and "images-check" in listed


def test_ruff_reads_the_build_package() -> None:
    files = subprocess.run([BIN / "ruff", "check", "--show-files", "."], cwd=ROOT, capture_output=True, text=True)
    read = {Path(line.strip()).resolve() for line in files.stdout.splitlines() if line.strip().endswith(".py")}
    build = set((ROOT / "build" / "blip_build").resolve().glob("*.py"))
    assert build and build <= read, sorted(map(str, build - read))


def test_a_lint_error_planted_in_build_fails_make_lint(tmp_path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    copy = tmp_path / "repo"
    for name in tracked.splitlines():
        if name.endswith((".py", ".toml", "Makefile")) and (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    lint = ["make", "--no-print-directory", "-o", "install-dev", "lint", f"BIN={BIN}"]
    clean = subprocess.run(lint, cwd=copy, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    target = copy / "build" / "blip_build" / "pipeline.py"
    target.write_text(target.read_text() + "\nimport os\n")  # an unused import after code: F401 and E402
    planted = subprocess.run(lint, cwd=copy, capture_output=True, text=True)
    assert planted.returncode != 0 and "build/blip_build/pipeline.py" in planted.stdout + planted.stderr


def test_the_pre_commit_hooks_are_make_lints_checks() -> None:
    """.pre-commit-config.yaml is valid for pre-commit itself, and runs what ``make lint`` runs."""
    config = ROOT / ".pre-commit-config.yaml"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pre-commit"), "validate-config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    hooks = {
        hook["id"]: hook["entry"] for repo in yaml.safe_load(config.read_text())["repos"] for hook in repo["hooks"]
    }
    lint = re.search(r"^lint:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert "ruff check" in hooks["ruff"] and "ruff check" in lint
    assert "ruff format --check" in hooks["ruff-format"] and "ruff format --check" in lint
    assert "lint-imports" in hooks["import-linter"] and "lint-imports" in lint
