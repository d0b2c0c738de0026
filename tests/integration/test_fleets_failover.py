"""Two real Triton fleets behind the router and the API tier, under steady load from client threads.

A fleet killed outright, a Python stub killed inside a fleet that stays "ready", a live weight change and a
config reload: the caller must see no failed request, and the traffic must go where the router says.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import httpx
import pytest

from blip_bench.stack import ADMIN, ApiProcess, write_api_config
from blip_client.client import BlipVqaClient
from blip_serving.deployment import Deployment
from blip_serving.manifest import read_manifest
from blip_serving.model_config import write_repository_configs
from blip_serving.triton.process import TritonServer
from tests.conftest import VALID_IMAGES
from tests.integration.fleets import Load, restart, share

PROBE_INTERVAL_S = 0.5


@pytest.fixture(scope="module")
def fleets(tiny_build, tmp_path_factory):
    # Two servers share this machine's cores: one torch thread per stub keeps them from oversubscribing it.
    repository = tmp_path_factory.mktemp("fleets") / "model_repository"
    shutil.copytree(tiny_build.repository, repository, ignore=shutil.ignore_patterns("configs"))
    artifacts = tiny_build.target_dir()
    # One fleet of each layout: the router and the API tier must not be able to tell them apart.
    layouts = {"neuron": "colocated", "gpu": "ensemble"}
    for layout in layouts.values():
        deployment = Deployment(layout=layout, intra_op_threads=1)
        write_repository_configs(read_manifest(artifacts).spec, "cpu", repository, artifacts, deployment)
    servers = {name: TritonServer(repository, "cpu", layout=layout).start() for name, layout in layouts.items()}
    for server in servers.values():  # the first calls of a TorchScript module profile and optimize it
        with BlipVqaClient(server.http_url) as client:
            for count in (1, 2, 2):
                client.ask(VALID_IMAGES[0].read_bytes(), ["is it?"] * count)
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def api(fleets, tmp_path_factory):
    config = tmp_path_factory.mktemp("api") / "api.toml"
    write_api_config(config, {n: s.http_url for n, s in fleets.items()}, {"neuron": 1, "gpu": 1}, PROBE_INTERVAL_S)
    process = ApiProcess(config)
    yield process
    process.stop()


def wait_for(condition, timeout_s: float, step_s: float = 0.05) -> float:
    """Seconds until ``condition()`` held; fails the test after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s}s"
        time.sleep(step_s)
    return time.monotonic() - started


def report(label: str, load: Load, since: float) -> None:
    outcomes = load.between(since)
    counts = {b: sum(o.backend == b for o in outcomes) for b in ("neuron", "gpu")}
    print(f"\n{label}: {len(outcomes)} requests, by backend {counts}, failed {len(load.failures())}")


def test_a_killed_fleet_loses_no_request_and_gets_traffic_back_when_it_returns(fleets, api) -> None:
    image = VALID_IMAGES[0].read_bytes()
    with Load(api.url, image, threads=4) as load:
        time.sleep(2.0)
        before = load.between(0)
        assert {o.backend for o in before} == {"neuron", "gpu"}, "both fleets share the traffic"

        fleets["neuron"].kill()
        killed = time.monotonic()
        detected = wait_for(lambda: not api.backends()["neuron"]["healthy"], timeout_s=10)
        time.sleep(2.0)
        during = load.between(killed + detected + 0.2)
        assert during and share(during, "gpu") == 1.0, "all traffic on the surviving fleet"

        fleets["neuron"] = restart(fleets["neuron"])
        back = time.monotonic()
        wait_for(lambda: api.backends()["neuron"]["healthy"], timeout_s=10)
        time.sleep(2.0)
        after = load.between(back)
    report("fleet kill", load, 0)
    print(f"killed fleet marked unhealthy after {detected:.2f}s; {len(during)} requests then all on gpu")
    assert not load.failures(), f"callers saw failures: {load.failures()[:3]}"
    assert share(after, "neuron") > 0.2, "traffic returns to the restarted fleet"


def test_a_killed_python_stub_is_detected_within_5s_and_loses_no_request(fleets, api) -> None:
    image = VALID_IMAGES[1].read_bytes()
    server = fleets["gpu"]
    with Load(api.url, image, threads=4) as load:
        time.sleep(1.0)
        stub, _ = server.stub_processes()["text_decoder_0_0"]
        os.kill(stub, signal.SIGKILL)
        killed = time.monotonic()
        detected = wait_for(lambda: not api.backends()["gpu"]["healthy"], timeout_s=5.0)
        ready = httpx.get(f"http://{server.http_url}/v2/health/ready", timeout=2).status_code
        time.sleep(1.5)
        during = load.between(killed + detected + 0.2)
    report("stub kill", load, 0)
    print(f"dead stub detected by the probes after {detected:.2f}s while /v2/health/ready said {ready}")
    assert not load.failures(), f"callers saw failures: {load.failures()[:3]}"
    assert during and share(during, "neuron") == 1.0
    server.kill()
    fleets["gpu"] = restart(server)
    wait_for(lambda: api.backends()["gpu"]["healthy"], timeout_s=10)


def test_a_live_weight_change_and_a_config_reload_move_the_share_within_one_probe_interval(fleets, api) -> None:
    image = VALID_IMAGES[2].read_bytes()
    with Load(api.url, image, threads=4) as load:
        time.sleep(1.5)
        even = load.between(0)
        response = httpx.put(f"{api.url}/admin/backends/gpu/weight", json={"weight": 3}, headers=ADMIN, timeout=5)
        assert response.status_code == 200 and response.json()["gpu"]["weight"] == 3
        changed = time.monotonic()
        time.sleep(PROBE_INTERVAL_S + 1.0)
        first_interval = load.between(changed, changed + PROBE_INTERVAL_S)

        write_api_config(
            api.config, {n: s.http_url for n, s in fleets.items()}, {"neuron": 1, "gpu": 0}, PROBE_INTERVAL_S
        )
        response = httpx.post(f"{api.url}/admin/reload", headers=ADMIN, timeout=5)
        assert response.status_code == 200 and response.json()["changes"]["reweighted"] == ["gpu"]
        reloaded = time.monotonic()
        time.sleep(PROBE_INTERVAL_S + 1.0)
        drained = load.between(reloaded, reloaded + PROBE_INTERVAL_S)
    report("weights", load, 0)
    print(
        f"gpu share: {share(even, 'gpu'):.2f} at 1:1 ({len(even)} requests); "
        f"{share(first_interval, 'gpu'):.2f} at 1:3 in the first {PROBE_INTERVAL_S}s ({len(first_interval)} requests); "
        f"{share(drained, 'gpu'):.2f} after reload to 1:0 ({len(drained)} requests)"
    )
    assert not load.failures()
    assert abs(share(even, "gpu") - 0.5) <= 0.1
    assert len(first_interval) >= 8 and abs(share(first_interval, "gpu") - 0.75) <= 0.15
    assert drained and share(drained, "gpu") == 0.0
