"""Where traces go: OpenTelemetry's own variables, off unless an endpoint is set."""

from __future__ import annotations

import pytest

from blip_contract.telemetry import otlp_traces_endpoint, service_name


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}, "http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"}, "http://c:4318/custom"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4318/t"},
            "http://b:4318/t",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, None),
    ],
)
def test_the_endpoint_is_the_sdks_rule(env, expected) -> None:
    assert otlp_traces_endpoint(env) == expected


def test_the_service_name_is_otels_where_set() -> None:
    assert service_name({}, "blip-api") == "blip-api"
    assert service_name({"OTEL_SERVICE_NAME": "edge-api"}, "blip-api") == "edge-api"
