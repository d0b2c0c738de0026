"""Model control over Triton's restricted model-repository API, through tritonclient: load, unload, state, ready.

Triton's model-repository API (load, unload, index) answers only requests carrying ``MODEL_CONTROL_HEADER`` with
the server's secret: the supervisor's. Every other client gets 403, on HTTP and gRPC alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from blip_serving.errors import TritonProcessError

MODEL_CONTROL_HEADER = "x-blip-supervisor"
T = TypeVar("T")


def restricted_api_flags(secret: str) -> list[str]:
    """tritonserver flags: explicit model control, every model of the repository loaded at start, and the
    model-repository API open only to the holder of ``secret``."""
    guard = f"model-repository:{MODEL_CONTROL_HEADER}={secret}"
    return [
        "--model-control-mode=explicit",
        "--load-model=*",
        f"--http-restricted-api={guard}",
        f"--grpc-restricted-protocol={guard}",
    ]


def is_ready(http_url: str, timeout_s: float = 2.0) -> bool:
    """``/v2/health/ready``; False while the server does not answer."""
    try:
        client = triton_http.InferenceServerClient(http_url, connection_timeout=timeout_s, network_timeout=timeout_s)
        try:
            return client.is_server_ready()
        finally:
            client.close()
    except (InferenceServerException, OSError):
        return False


@dataclass(frozen=True)
class ModelControl:
    """The supervisor's side of the restricted API: ``http_url`` and the secret the server was started with."""

    http_url: str
    secret: str

    def _call(self, what: str, timeout_s: float, call: Callable[[Any, dict[str, str]], T]) -> T:
        client = triton_http.InferenceServerClient(self.http_url, connection_timeout=10.0, network_timeout=timeout_s)
        try:
            return call(client, {MODEL_CONTROL_HEADER: self.secret})
        except (InferenceServerException, OSError) as error:
            raise TritonProcessError(f"{what} failed: {error}") from error
        finally:
            client.close()

    def load(self, model: str, timeout_s: float = 120.0) -> None:
        self._call(f"loading {model}", timeout_s, lambda c, h: c.load_model(model, headers=h))

    def unload(self, model: str, timeout_s: float = 30.0) -> None:
        self._call(f"unloading {model}", timeout_s, lambda c, h: c.unload_model(model, headers=h))

    def state(self, model: str) -> str | None:
        """The model's state in the repository index (READY, UNAVAILABLE, LOADING, ...)."""
        entries = self._call("the repository index", 10.0, lambda c, h: c.get_model_repository_index(headers=h))
        return next((entry.get("state") for entry in entries if entry.get("name") == model), None)

    def reload(self, model: str, timeout_s: float = 120.0, drain_s: float = 1.5) -> None:
        """Unload ``model``, let its in-flight requests fail, then load it; raises ``TritonProcessError``.

        Unload is asynchronous, and with a dead stub it never completes (the model stays UNLOADING). A load sent at
        once is folded into it: the old instance, and every request stuck on the dead stub, then live until the new
        instance is ready (measured: a request in flight on the killed stub waited the whole load, 5 s here).
        Given ``drain_s`` first, the unload failed such a request after 0.7 to 1.0 s on an idle machine, so a router
        could retry it elsewhere at once; under the soak's load, requests in flight at the kill still waited for the
        load (2 to 7 s, docs/operations.md). On Neuron the old process has released its NeuronCores before the new
        one reserves them. Loading a component an ensemble uses makes the ensemble whole again.
        """
        self.unload(model)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self.state(model) != "UNAVAILABLE":
            time.sleep(0.1)
        self.load(model, timeout_s)
