"""Triton's OpenTelemetry trace mode, where an OTLP endpoint is configured (``blip_contract.telemetry``).

Triton then traces every request that carries a W3C ``traceparent`` (the API tier's router sends one from the
span of its attempt), whatever its sampling ``rate``; ``rate=0`` keeps it from starting traces of its own for
requests nobody traced upstream (perf_analyzer, probes). Its spans (the request, each model, each compute) go to
the same collector as the API tier's, children of the router's attempt: one trace from the API request to the
NeuronCore's compute. Triton's own exporter is OTLP/HTTP with JSON bodies.
"""

from __future__ import annotations

from collections.abc import Mapping

from blip_contract.telemetry import otlp_traces_endpoint, service_name

# How often Triton's batch span processor sends (ms): a trace is in the collector about a second after its request.
EXPORT_DELAY_MS = 1000


def trace_flags(env: Mapping[str, str], default_service: str) -> list[str]:
    """``--trace-config`` flags for ``env``'s endpoint; none (tracing off) where none is configured."""
    endpoint = otlp_traces_endpoint(env)
    if endpoint is None:
        return []
    return [
        "--trace-config=mode=opentelemetry",
        f"--trace-config=opentelemetry,url={endpoint}",
        f"--trace-config=opentelemetry,resource=service.name={service_name(env, default_service)}",
        f"--trace-config=opentelemetry,bsp_schedule_delay={EXPORT_DELAY_MS}",
        "--trace-config=rate=0",
        "--trace-config=count=-1",
        "--trace-config=level=TIMESTAMPS",
    ]
