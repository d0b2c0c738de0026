"""OpenTelemetry for the API tier: a span for every request (FastAPI's instrumentation), the router's attempt
spans and the event layer's store and delivery spans under it, and OTLP export where it is configured.

Export is off unless an endpoint is configured (``blip_contract.telemetry``: ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); the spans then go over OTLP/HTTP with JSON bodies (the protobuf exporter
needs protobuf 5, which tritonclient 2.50's gRPC client refuses). ``OTEL_SERVICE_NAME`` (default ``blip-api``),
``OTEL_TRACES_SAMPLER`` and the other standard variables are read by the SDK itself. Without an endpoint no SDK is
installed: every span is OpenTelemetry's no-op, and no ``traceparent`` goes to the fleets.

Probes and scrapes (``/livez``, ``/healthz``, ``/metrics``) get no span.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from blip_contract.telemetry import otlp_traces_endpoint, service_name
from blip_contract.version import __version__

log = logging.getLogger("blip_api.telemetry")

SERVICE = "blip-api"
UNTRACED_ROUTES = "/livez,/healthz,/metrics"


def configure_tracing(env: Mapping[str, str] | None = None) -> TracerProvider | None:
    """Install the SDK with an OTLP exporter as the global tracer provider, where an endpoint is configured; the
    provider (to shut down, flushing its spans, when the process ends), or None where tracing stays off."""
    endpoint = otlp_traces_endpoint(env)
    if endpoint is None:
        return None
    resource = Resource.create({"service.name": service_name(env, SERVICE), "service.version": __version__})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    log.info("traces exported to %s", endpoint)
    return provider


def instrument(app: FastAPI) -> None:
    """A server span for every request but the probes, from the global tracer provider (no-op without one). The
    ASGI send and receive sub-spans are left out: one request, one span, and the router's attempts under it.

    Without an installed SDK (``configure_tracing`` found no endpoint) the app is left as it is: every span would be
    a no-op, and the instrumentation's middleware still costs each request its route lookup and attributes."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return
    FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED_ROUTES, exclude_spans=["receive", "send"])
