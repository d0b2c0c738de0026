"""The wheel installs and runs outside the checkout: what the images get from ``pip install .``.

The wheel is built from a copy of the sources, installed without dependencies into a fresh venv in a temporary
folder, and run from there. The venv borrows only the third-party packages of the project's venv (a plain path, so
the checkout's editable install stays out); every ``blip_*`` module must come from the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT

# What pyproject's packages.find reads, and the metadata beside it.
SOURCES = ("pyproject.toml", "README.md", "blip_serving", "contract", "build", "client", "benchmarks")


def run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its bin directory."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy(origin, source / name)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(work / "dist"),
            str(source),
        ],
        work,
    )
    (wheel,) = (work / "dist").glob("blip_vqa_triton-*.whl")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    purelib = Path(
        run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work
        ).stdout.strip()
    )
    # Third-party packages from the project's venv, as a plain path: its .pth files (the editable install) do not run.
    (purelib / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        work,
    )
    return venv / "bin"


def test_the_console_scripts_answer_help(installed, tmp_path) -> None:
    for script in ("blip-serve", "blip-client", "blip-build", "blip-api"):
        result = run([str(installed / script), "--help"], tmp_path)
        assert result.stdout.startswith("usage: "), script


def test_the_plan_reads_its_host_catalog_from_the_package(installed, tmp_path) -> None:
    result = run(
        [str(installed / "python"), "-m", "blip_serving.placement", "--host-type", "inf2.xlarge", "--artifacts", "a"],
        tmp_path,
    )
    assert "NEURON_RT_VISIBLE_CORES per instance ['0', '1']" in result.stdout
    assert (tmp_path / "a" / "plan-neuron.json").is_file()


def test_every_serving_module_imports_from_the_wheel(installed, tmp_path) -> None:
    """Every module of the packages a stub and the API tier load, imported from the venv, none from the checkout."""
    check = """
import importlib, pkgutil, sys
checkout, loaded = sys.argv[1], []
for package in ("blip_contract", "blip_serving", "blip_client", "blip_api", "blip_build"):
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        if not module.name.endswith(".__main__"):  # those run their command
            loaded.append(importlib.import_module(module.name))
outside = [m.__name__ for m in loaded if m.__file__.startswith(checkout)]
assert not outside, f"imported from the checkout: {outside}"
print(len(loaded), "modules")
"""
    result = run([str(installed / "python"), "-c", check, str(ROOT)], tmp_path)
    assert int(result.stdout.split()[0]) > 40
