"""The light client distribution (``client/dist``, ``blip-vqa-client``) as a caller installs it: built from a copy
of its sources, installed with its dependencies (at the project's pinned versions) into a clean venv, it has no
torch, FastAPI, uvicorn, SQLAlchemy or Pillow, and its ``blip-client`` asks a real fleet."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from blip_contract.version import __version__
from tests.conftest import ROOT
from tests.integration.test_api import PHOTO

# What client/dist/pyproject.toml's package-dir reaches, at the same relative places.
SOURCES = ("client/dist", "client/blip_client", "contract/blip_contract")
HEAVY = ("torch", "transformers", "fastapi", "uvicorn", "starlette", "sqlalchemy", "alembic", "PIL", "psycopg")


def run(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def pinned_constraints(path: Path) -> Path:
    """requirements/dev.lock's pins without their hashes: the clean venv gets the versions the project tests."""
    pins = re.findall(r"^([A-Za-z0-9_.\-\[\],]+==[^\s;\\]+)", (ROOT / "requirements" / "dev.lock").read_text(), re.M)
    path.write_text("\n".join(re.sub(r"\[.*\]", "", pin) for pin in pins) + "\n")
    return path


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("light-client")
    for name in SOURCES:
        shutil.copytree(ROOT / name, work / "src" / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"),
         str(work / "src" / "client" / "dist")])  # fmt: skip
    (wheel,) = (work / "dist").glob("blip_vqa_client-*.whl")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel),
         "-c", str(pinned_constraints(work / "constraints.txt"))])  # fmt: skip
    return venv / "bin"


def test_the_light_distribution_has_no_server_stack(light_venv: Path) -> None:
    check = "import importlib.util, sys; print([m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    found = run([str(light_venv / "python"), "-c", check, *HEAVY]).stdout.strip()
    assert found == "[]", f"the light client's venv has {found}"
    imports = "import blip_client.client, blip_client.async_client, blip_client.router, blip_contract.pixels"
    run([str(light_venv / "python"), "-c", imports])


def test_the_light_client_asks_a_real_fleet(light_venv: Path, triton) -> None:
    assert run([str(light_venv / "blip-client"), "--version"]).stdout.strip() == f"blip-client {__version__}"
    answer = run(
        [str(light_venv / "blip-client"), "ask", "--url", triton.http_url, "--image", str(PHOTO), "Is there a dog?"]
    )
    assert "Is there a dog? -> " in answer.stdout, answer.stdout
    probe = run([str(light_venv / "blip-client"), "probe", "--url", triton.http_url])
    assert probe.stdout.startswith("ok: "), probe.stdout
