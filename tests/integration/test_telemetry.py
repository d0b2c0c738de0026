"""One request's trace, joined across the tiers: the API tier's spans (the SDK's in-memory exporter, in-process)
and the fleet's own spans (a real Triton in its OpenTelemetry mode, exporting to an OTLP/HTTP receiver on
loopback) share its trace id, and Triton's request span is the child of the router's attempt."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from blip_api.app import create_app
from blip_serving.triton.process import TritonServer
from tests.integration.test_api import AUTH, PHOTO, settings_for


class Receiver:
    """An OTLP/HTTP receiver: keeps every JSON body posted to /v1/traces."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("content-length", 0)))
                bodies.append(json.loads(data))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def spans(self, trace_id: str) -> list[dict]:
        return [
            span
            for body in list(self.bodies)
            for resource in body["resourceSpans"]
            for scope in resource["scopeSpans"]
            for span in scope["spans"]
            if span["traceId"] == trace_id
        ]


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="module")
def traced_fleet(tiny_build, receiver):
    server = TritonServer(
        tiny_build.repository, "cpu", env={**os.environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url}
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_spans():
    """The API tier's spans, in memory: the global provider (set once a process; the router's tracer is global)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        pytest.fail("another test set a global tracer provider first")
    return exporter


def test_a_request_has_one_trace_from_the_api_through_the_router_into_triton(api_spans, traced_fleet, receiver):
    request_id = "trace-join-1"
    with TestClient(create_app(settings_for({"neuron": traced_fleet.http_url}))) as client:
        response = client.post(
            "/v1/frames",
            content=PHOTO.read_bytes(),
            params={"behavior": "barking"},
            headers=AUTH | {"Content-Type": "image/jpeg", "X-Request-ID": request_id},
        )
        probe = client.get("/healthz")
    assert response.status_code == 200, response.text
    assert probe.status_code == 200

    spans = api_spans.get_finished_spans()
    (request,) = [s for s in spans if s.kind is SpanKind.SERVER and s.attributes.get("blip.request_id") == request_id]
    assert request.name == "POST /v1/frames"
    assert not [s for s in spans if s.kind is SpanKind.SERVER and "healthz" in s.name], "probes get no span"
    (attempt,) = [s for s in spans if s.name == "router.attempt" and s.context.trace_id == request.context.trace_id]
    assert attempt.parent.span_id == request.context.span_id, "the attempt is the request span's child"
    assert attempt.attributes["blip.backend"] == "neuron" and attempt.attributes["blip.outcome"] == "ok"
    assert attempt.attributes["blip.attempt"] == 1

    trace_id, attempt_id = f"{request.context.trace_id:032x}", f"{attempt.context.span_id:016x}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
        s.get("parentSpanId") == attempt_id for s in receiver.spans(trace_id)
    ):
        time.sleep(0.2)
    fleet = receiver.spans(trace_id)
    assert fleet, f"Triton exported no span of trace {trace_id}: {len(receiver.bodies)} bodies received"
    (top,) = [s for s in fleet if s.get("parentSpanId") == attempt_id]  # Triton's request span
    assert any(s.get("parentSpanId") == top["spanId"] for s in fleet), "the models' spans hang under it"
    request_ids = {
        a["value"].get("stringValue") for s in fleet for a in s.get("attributes", []) if a["key"] == "triton.request_id"
    }
    assert request_ids == {request_id}, "Triton's model spans name the API's request id"
    names = {s["name"] for s in fleet}
    assert "compute" in names, names  # down to the model's execution


def test_without_an_endpoint_triton_traces_nothing(tiny_build) -> None:
    server = TritonServer(tiny_build.repository, "cpu", env={k: v for k, v in os.environ.items() if "OTEL" not in k})
    assert not [flag for flag in server.command() if flag.startswith("--trace-config")]
