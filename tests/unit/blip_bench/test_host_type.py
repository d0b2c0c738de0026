"""blip_bench.host_type: the flag, else EC2's metadata service (IMDSv2, here a loopback server speaking its two
calls), else ``local``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from blip_bench.host_type import DISABLED_ENV, ENDPOINT_ENV, HostTypeFound, ec2_instance_type, host_type

TOKEN = "AQAEAFake-session-token=="


class _Imds(BaseHTTPRequestHandler):
    """IMDSv2 as EC2 answers it: a PUT for a session token with a TTL header, then GETs carrying the token; a GET
    without it is 401 (IMDSv1 turned off, as EKS's launch templates do)."""

    instance_type = "inf2.xlarge"
    calls: ClassVar[list[str]] = []

    def do_PUT(self) -> None:
        self.calls.append(f"PUT {self.path}")
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._send(400, b"")
            return
        self._send(200, TOKEN.encode())

    def do_GET(self) -> None:
        self.calls.append(f"GET {self.path}")
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            self._send(401, b"")
        elif self.path == "/latest/meta-data/instance-type":
            self._send(200, self.instance_type.encode())
        else:
            self._send(404, b"")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def imds() -> Iterator[str]:
    _Imds.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Imds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_instance_type_comes_from_imdsv2_with_a_session_token(imds, monkeypatch) -> None:
    monkeypatch.delenv(DISABLED_ENV, raising=False)
    monkeypatch.setenv(ENDPOINT_ENV, imds)
    assert host_type(None) == HostTypeFound(name="inf2.xlarge", source="ec2-metadata")
    assert _Imds.calls == ["PUT /latest/api/token", "GET /latest/meta-data/instance-type"]


def test_the_flag_wins_and_the_metadata_is_not_asked(imds, monkeypatch) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, imds)
    assert host_type("g5.xlarge") == HostTypeFound(name="g5.xlarge", source="flag")
    assert _Imds.calls == []


def test_without_metadata_the_host_is_local(imds, monkeypatch) -> None:
    monkeypatch.setenv(DISABLED_ENV, "true")  # the AWS SDKs' own switch
    monkeypatch.setenv(ENDPOINT_ENV, imds)
    assert host_type(None) == HostTypeFound(name="local", source="default") and _Imds.calls == []
    monkeypatch.delenv(DISABLED_ENV)
    closed = imds.rsplit(":", 1)[0] + ":9"  # discard: nothing listens
    assert ec2_instance_type(closed, timeout_s=0.5) is None
    assert host_type(None, endpoint=closed) == HostTypeFound(name="local", source="default")


def test_a_metadata_service_that_refuses_the_token_gives_no_type(imds, monkeypatch) -> None:
    monkeypatch.delenv(DISABLED_ENV, raising=False)
    assert ec2_instance_type(imds + "/elsewhere") is None  # the token PUT is answered 400
    assert _Imds.calls == ["PUT /elsewhere/latest/api/token"]
