"""Where traces go, by OpenTelemetry's own environment variables: one rule for the API tier and the fleets.

Export is off unless an OTLP endpoint is configured: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the full URL,
``http://collector:4318/v1/traces``) or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the collector's base URL, to which the
signal path is added), as every OpenTelemetry SDK reads them. ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none`` turn it off whatever is set. The API tier then exports its spans over OTLP/HTTP, and
``blip-serve`` starts Triton in its OpenTelemetry trace mode with the same endpoint, so that a request's spans from
both tiers arrive at one collector under one trace id (the router sends the W3C ``traceparent`` to Triton).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

TRACES_PATH = "/v1/traces"


def otlp_traces_endpoint(env: Mapping[str, str] | None = None) -> str | None:
    """The OTLP/HTTP traces URL configured in ``env`` (default: this process's environment), or None."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    if endpoint := env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return endpoint
    if base := env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return base.rstrip("/") + TRACES_PATH
    return None


def service_name(env: Mapping[str, str] | None, default: str) -> str:
    """``OTEL_SERVICE_NAME`` where set, else this process's own name."""
    env = os.environ if env is None else env
    return env.get("OTEL_SERVICE_NAME", "").strip() or default
