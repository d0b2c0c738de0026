"""The real Triton server from the nvidia-pytriton wheel, serving the session's random-tiny build in each layout.

Every test that uses ``triton`` or ``client`` runs once against the ensemble layout and once against the colocated
one: the same calls must get the same answers and the same errors, whichever layout a fleet runs."""

from __future__ import annotations

import pytest

from blip_client.client import BlipVqaClient
from blip_serving.layouts import LAYOUT_NAMES
from blip_serving.triton.process import TritonServer


@pytest.fixture(scope="session", params=LAYOUT_NAMES)
def triton(tiny_build, request):
    server = TritonServer(tiny_build.repository, "cpu", layout=request.param)
    server.start()
    yield server
    server.stop()
    code = server.process.returncode
    assert code == 0, f"tritonserver did not shut down cleanly (exit {code}):\n{server.recent_log()}"


@pytest.fixture(scope="session")
def client(triton):
    with BlipVqaClient(triton.http_url) as http_client:
        yield http_client


@pytest.fixture(scope="module")
def colocated_fleet(tiny_build):
    """One tritonserver in the colocated layout, for a module that starts its own API tier processes."""
    server = TritonServer(tiny_build.repository, "cpu", layout="colocated")
    server.start()
    yield server
    server.stop()
