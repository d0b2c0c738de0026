"""Triton's trace flags: its OpenTelemetry mode with the configured endpoint, propagated requests only."""

from __future__ import annotations

from blip_serving.triton.tracing import trace_flags


def test_no_endpoint_no_tracing() -> None:
    assert trace_flags({}, "blip-fleet-cpu") == []
    assert trace_flags({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, "x") == []


def test_an_endpoint_starts_the_opentelemetry_mode_for_propagated_requests_only() -> None:
    flags = trace_flags({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "blip-fleet-neuron")
    assert "--trace-config=mode=opentelemetry" in flags
    assert "--trace-config=opentelemetry,url=http://collector:4318/v1/traces" in flags
    assert "--trace-config=opentelemetry,resource=service.name=blip-fleet-neuron" in flags
    assert "--trace-config=rate=0" in flags, "Triton starts no trace of its own; a traceparent always is"
    named = trace_flags({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SERVICE_NAME": "fleet-a"}, "x")
    assert "--trace-config=opentelemetry,resource=service.name=fleet-a" in named
