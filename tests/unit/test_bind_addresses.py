"""Where the fleet listens: loopback unless HOST says otherwise, and the supervisor probes where it listens."""

from __future__ import annotations

import pytest

from blip_serving.triton.process import TritonServer

ADDRESS_FLAGS = ("--http-address=", "--grpc-address=", "--metrics-address=")


def addresses(server: TritonServer) -> set[str]:
    return {arg.split("=", 1)[1] for arg in server.command() if arg.startswith(ADDRESS_FLAGS)}


@pytest.mark.parametrize(
    ("host", "listens", "reached_at"),
    [
        (None, "127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "0.0.0.0", "127.0.0.1"),  # a container: every address, probed over loopback
        ("192.0.2.7", "192.0.2.7", "192.0.2.7"),  # one address: loopback would find nothing
    ],
)
def test_triton_listens_where_host_says_and_is_reached_there(tmp_path, host, listens, reached_at) -> None:
    server = TritonServer(
        tmp_path, "cpu", **({"listen_address": host} if host else {}), http_port=8000, metrics_port=8002
    )
    try:
        assert addresses(server) == {listens}
        assert server.http_url == f"{reached_at}:8000"
        assert server.metrics_url == f"http://{reached_at}:8002/metrics"
        assert not any("model-control" in arg for arg in server.command()), "model control stays off (mode none)"
    finally:
        server.stop()  # removes the repository view command() made


@pytest.mark.parametrize(("target", "gpu_metrics"), [("cpu", "false"), ("neuron", "false"), ("gpu", "true")])
def test_triton_reports_gpu_metrics_for_the_gpu_target_only(tmp_path, target, gpu_metrics) -> None:
    """The GPU fleet's dashboard reads nv_gpu_*: Triton exports them only when allowed."""
    server = TritonServer(tmp_path, target, http_port=8000, metrics_port=8002)
    try:
        assert f"--allow-gpu-metrics={gpu_metrics}" in server.command()
    finally:
        server.stop()
