"""docker/images.toml, the image matrix: every image's base, Python and platform agree with its Dockerfile, the
Neuron release and pyproject.toml; every lock resolves against the registry for its image's Python and platform
(tools/locks.py check, uv); the CPU locks take torch's CPU build; and the code runs on the oldest Python claimed."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT

MATRIX = tomllib.loads((ROOT / "docker" / "images.toml").read_text())
IMAGES = MATRIX["images"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NEURON = tomllib.loads((ROOT / "blip_serving" / "targets" / "neuron_release.toml").read_text())


def python_floor() -> tuple[int, int]:
    (floor,) = re.findall(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    return int(floor[0]), int(floor[1])


@pytest.mark.parametrize("name", list(IMAGES))
def test_each_dockerfile_builds_from_the_matrix_base_and_installs_its_lock(name) -> None:
    image = IMAGES[name]
    text = (ROOT / image["dockerfile"]).read_text()
    (base,) = re.findall(r"^ARG BASE(?:_IMAGE)?=(\S+)$", text, re.M)
    assert base == image["base"], f"{image['dockerfile']}: FROM cannot read the matrix; its default must equal it"
    assert "tools/locks.py install" in text and (ROOT / image["lock"]).is_file()
    lock = re.findall(r"^ARG LOCK=(\S+)$", text, re.M) or re.findall(r"locks.py install (\w+)", text)
    assert lock == [name]
    floor = python_floor()
    assert tuple(int(part) for part in image["python"].split(".")) >= floor, "requires-python must hold in every image"


def test_the_neuron_image_is_the_neuron_releases() -> None:
    assert IMAGES["neuron"]["base"] == NEURON["image"]["base"]
    assert IMAGES["neuron"]["python"] == NEURON["image"]["python"]
    assert IMAGES["neuron"]["from_neuron_release"] == ["torch"]
    lock = (ROOT / IMAGES["neuron"]["lock"]).read_text()
    assert not re.search(r"^torch==", lock, re.M), "torch comes from the Neuron release, never from the lock"


@pytest.mark.parametrize("name", ["cpu", "dev"])
def test_cpu_locks_take_torchs_cpu_build_not_the_cuda_one(name) -> None:
    entry = IMAGES.get(name) or MATRIX["environments"][name]
    lock = (ROOT / entry["lock"]).read_text()
    assert re.search(r"^torch==2\.13\.0\+cpu \\$", lock, re.M)
    assert not re.search(r"^nvidia-(?!pytriton)", lock, re.M), "no CUDA libraries in a CPU environment"


def test_the_tests_run_on_the_oldest_python_the_project_claims() -> None:
    """requires-python's floor is the Python this suite (serving, client, API) runs on."""
    assert sys.version_info[:2] == python_floor() == (3, 11)


def registry_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not registry_reachable(), reason="pypi.org is unreachable: locks cannot be resolved offline")
def test_every_lock_resolves_for_its_images_python_and_platform_and_is_current() -> None:
    """uv resolves pyproject.toml for each image (its Python, platform and extras; wheels only) and must arrive at
    the committed lock: a pin without a wheel for an image, or a lock out of date, fails here."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "locks.py"), "check"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("unchanged") == len(IMAGES) + len(MATRIX["environments"])


def test_an_unknown_key_in_the_image_matrix_is_refused_with_the_nearest_name(tmp_path) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import locks
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert set(locks.entries()) == set(IMAGES) | set(MATRIX["environments"])
    planted = tmp_path / "images.toml"
    planted.write_text((ROOT / "docker" / "images.toml").read_text().replace("dockerfile =", "dockerfil =", 1))
    with pytest.raises(locks.MatrixError) as raised:
        locks.read_matrix(planted)
    assert (
        str(raised.value) == f"{planted}: images.api.dockerfil is not a setting (did you mean images.api.dockerfile?)"
    )
