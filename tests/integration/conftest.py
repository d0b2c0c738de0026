"""The real Triton server from the nvidia-pytriton wheel, serving the session's random-tiny build."""

from __future__ import annotations

import pytest

from blip_client.client import BlipVqaClient
from blip_serving.deploy.server import TritonServer


@pytest.fixture(scope="session")
def triton(tiny_build):
    server = TritonServer(tiny_build.repository, "cpu")
    server.start()
    yield server
    server.stop()
    code = server.process.returncode
    assert code == 0, f"tritonserver did not shut down cleanly (exit {code}):\n{server.recent_log()}"


@pytest.fixture(scope="session")
def client(triton):
    with BlipVqaClient(triton.http_url) as http_client:
        yield http_client
