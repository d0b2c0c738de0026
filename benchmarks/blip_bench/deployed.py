"""A deployed fleet as it describes itself: ``make perf URL=host:port`` measures what runs there, not a model of its
own. Everything comes from the fleet's Triton: the ready models (hence the layout), the stubs' config parameters
(the target the artifacts were built for, and where they are), instance counts and versions. Nothing is built and no
server is started.
"""

from __future__ import annotations

from pydantic import Field
from tritonclient.http import InferenceServerClient, InferenceServerException

from blip_contract.records import Strict
from blip_serving.errors import ArtifactError
from blip_serving.layouts import layout_serving
from blip_serving.spec import PUBLIC_MODEL
from blip_serving.stub_parameters import StubParameters

GRPC_PORT = 8001  # the fleet Service's gRPC port (deploy/kubernetes/base/fleet/service.yaml), Triton's default


class FleetUnreadable(RuntimeError):
    """The fleet at the URL is not ready, or is not a BLIP fleet: one line saying which."""


class DeployedFleet(Strict):
    """What ``describe`` read of a running fleet; the perf summary carries it."""

    url: str = Field(description="The fleet's HTTP endpoint, host:port.")
    grpc_url: str = Field(description="Its gRPC endpoint, which perf_analyzer measures.")
    layout: str
    target: str = Field(description="The target its artifacts were built for (the stubs' config).")
    artifact_dir: str = Field(description="Where its stubs read their artifacts, relative to its model repository.")
    instances: int = Field(description="Instances of each of the layout's Python models (the largest count).")
    versions: dict[str, str] = Field(description="Ready model -> its ready version.")


def grpc_url_of(url: str, grpc_port: int = GRPC_PORT) -> str:
    host, _, _ = url.rpartition(":")
    return f"{host or url}:{grpc_port}"


def describe(url: str, grpc_url: str | None = None, timeout_s: float = 10.0) -> DeployedFleet:
    """Read the fleet at ``url``; ``FleetUnreadable`` in one line if it is down or is no layout's set of models."""
    client = InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s)
    try:
        if not client.is_server_ready():
            raise FleetUnreadable(f"the fleet at {url} is not ready")
        index = client.get_model_repository_index()
        ready = {entry["name"]: entry.get("version", "") for entry in index if entry.get("state") == "READY"}
        try:
            layout = layout_serving(set(ready))
        except ValueError as error:
            raise FleetUnreadable(f"{url}: {error}") from None
        parameters, counts = [], []
        for name in layout.python_models:
            config = client.get_model_config(name)
            parameters.append(StubParameters.from_config(config.get("parameters") or {}))
            counts.append(sum(int(group.get("count", 1)) for group in config.get("instance_group") or [{}]))
    except InferenceServerException as error:
        raise FleetUnreadable(f"the fleet at {url}: {error.message()}") from None
    except ArtifactError as error:
        raise FleetUnreadable(f"the fleet at {url}: {error}") from None
    except OSError as error:
        raise FleetUnreadable(f"the fleet at {url} cannot be reached: {error}") from None
    finally:
        client.close()
    if PUBLIC_MODEL not in ready:
        raise FleetUnreadable(f"the fleet at {url} does not serve {PUBLIC_MODEL}")
    return DeployedFleet(
        url=url,
        grpc_url=grpc_url or grpc_url_of(url),
        layout=layout.name,
        target=parameters[0].target,
        artifact_dir=parameters[0].artifact_dir,
        instances=max(counts),
        versions=ready,
    )
