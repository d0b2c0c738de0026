"""What the clients put on the wire and how they read Triton's answers, against a recording HTTP endpoint.

The endpoint speaks the KServe v2 inference protocol over loopback and records each request's JSON header, so the
real tritonclient (blocking and asyncio) builds and sends every byte; what it answers is set per test. The real
server's answers to the same requests are in tests/integration/test_served_answers.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from blip_client.async_client import AsyncBlipVqaClient
from blip_client.client import BlipVqaClient
from blip_client.errors import InvalidRequestError, ServerError, ServerTimeoutError, ServerUnavailableError
from blip_client.wire import VqaResult, classify, parse_result
from blip_contract import ANSWERS, IMAGE, PUBLIC_MODEL, QUESTIONS, SCORES, SCORES_ONLY

FRAME = b"\xff\xd8 frame bytes\x00\x00"  # trailing NULs: numpy's fixed-width bytes would drop them


class Endpoint(ThreadingHTTPServer):
    """Records each inference request; answers ``status`` with ``body`` (a v2 response or an error)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.body: dict[str, Any] | None = None
        self.delay_s = 0.0

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Endpoint

    def do_POST(self) -> None:  # http.server's name for the POST handler
        body = self.rfile.read(int(self.headers["Content-Length"]))
        header_length = int(self.headers.get("Inference-Header-Content-Length", len(body)))
        request = json.loads(body[:header_length])
        self.server.requests.append({"path": self.path, "binary": body[header_length:], **request})
        if self.server.delay_s:
            threading.Event().wait(self.server.delay_s)
        answer = self.server.body or default_answer(request)
        payload = json.dumps(answer).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def default_answer(request: dict[str, Any]) -> dict[str, Any]:
    """One score per question, and answers unless only SCORES was asked for; the request's id echoed, as Triton does."""
    count = next(i["shape"][1] for i in request["inputs"] if i["name"] == QUESTIONS)
    wanted = [o["name"] for o in request.get("outputs", [])]
    outputs = [{"name": SCORES, "datatype": "FP32", "shape": [1, count], "data": [0.25] * count}]
    if ANSWERS in wanted:
        outputs.append({"name": ANSWERS, "datatype": "BYTES", "shape": [1, count], "data": ["yes"] * count})
    return {"model_name": PUBLIC_MODEL, "outputs": outputs} | ({"id": request["id"]} if "id" in request else {})


def ask_async(
    url: str,
    questions: tuple[str, ...] = ("q?",),
    *,
    timeout_s: float = 5.0,
    scores_only: bool = False,
    request_id: str | None = None,
):
    """One call of the asyncio client, which is closed after it whatever happened."""

    async def body():
        client = AsyncBlipVqaClient(url)
        try:
            return await client.infer(
                FRAME, questions, timeout_s=timeout_s, scores_only=scores_only, request_id=request_id
            )
        finally:
            await client.close()
            assert client.closed

    return asyncio.run(body())


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_scores_only_is_sent_when_asked_and_only_then(endpoint: Endpoint) -> None:
    with BlipVqaClient(endpoint.url) as client:
        assert client.ask(FRAME, ["Is the dog barking?", "Is it eating?"]) == ["yes", "yes"]
        assert client.scores(FRAME, ["Is the dog barking?"]) == [0.25]
        both = client.infer(FRAME, ["a?"])
    full, scores, default = endpoint.requests
    assert all(r["path"] == f"/v2/models/{PUBLIC_MODEL}/infer" for r in endpoint.requests)
    assert SCORES_ONLY not in full.get("parameters", {}) and SCORES_ONLY not in default.get("parameters", {})
    assert scores["parameters"][SCORES_ONLY] is True
    assert sorted(o["name"] for o in full["outputs"]) == [ANSWERS, SCORES]
    assert [o["name"] for o in scores["outputs"]] == [SCORES]
    assert both.answers == ["yes"] and both.scores == [0.25]


def test_one_frame_per_request_with_its_questions(endpoint: Endpoint) -> None:
    with BlipVqaClient(endpoint.url) as client:
        client.infer(FRAME, ["Is the dog barking?", b"raw bytes?", "¿qué?"])
    (request,) = endpoint.requests
    shapes = {i["name"]: (i["datatype"], i["shape"]) for i in request["inputs"]}
    assert shapes == {IMAGE: ("BYTES", [1, 1]), QUESTIONS: ("BYTES", [1, 3])}
    # BYTES elements travel as a 4-byte little-endian length and the bytes, in input order.
    elements = [FRAME, b"Is the dog barking?", b"raw bytes?", "¿qué?".encode()]
    assert request["binary"] == b"".join(len(e).to_bytes(4, "little") + e for e in elements)
    with BlipVqaClient(endpoint.url) as client:
        with pytest.raises(TypeError, match=r"^questions must be a sequence of strings, not one string$"):
            client.infer(FRAME, "Is the dog barking?")
        with pytest.raises(TypeError, match="image must be the encoded file's bytes, got str"):
            client.infer("frame.jpg", ["q?"])  # type: ignore[arg-type]
    assert len(endpoint.requests) == 1, "refused before anything is sent"


def test_the_asyncio_client_sends_the_same_requests(endpoint: Endpoint) -> None:
    full = ask_async(endpoint.url, ("a?", "b?"))
    scores = ask_async(endpoint.url, scores_only=True)
    assert full.answers == ["yes", "yes"] and scores.answers is None and scores.scores == [0.25]
    first, second = endpoint.requests
    assert SCORES_ONLY not in first.get("parameters", {}) and second["parameters"][SCORES_ONLY] is True


def test_a_request_id_is_sent_as_tritons_and_read_back_from_its_answer(endpoint: Endpoint) -> None:
    tagged = ask_async(endpoint.url, request_id="camera-7:frame-42")
    untagged = ask_async(endpoint.url)
    first, second = endpoint.requests
    assert first["id"] == "camera-7:frame-42" and "id" not in second, "no id: none sent, not an empty one"
    assert tagged.request_id == "camera-7:frame-42" and untagged.request_id is None


def test_the_echoed_id_is_read_from_an_http_dict_or_a_grpc_message() -> None:
    class Answer:
        def __init__(self, response: Any) -> None:
            self.response = response

        def as_numpy(self, name: str) -> np.ndarray:
            return np.array([[0.5]], dtype=np.float32)

        def get_response(self) -> Any:
            return self.response

    class GrpcResponse:
        id = "frame-9"

    assert parse_result(Answer({"id": "frame-8"}), 1, scores_only=True).request_id == "frame-8"
    assert parse_result(Answer(GrpcResponse()), 1, scores_only=True).request_id == "frame-9"
    assert parse_result(Answer({"id": ""}), 1, scores_only=True).request_id is None


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (400, InvalidRequestError, "IMAGE is empty"),
        (500, ServerError, r"\[500\] Stub process 'text_decoder_0_0' is not healthy"),
        (503, ServerUnavailableError, "blip_vqa is not ready"),
    ],
)
def test_triton_errors_become_typed_errors(endpoint: Endpoint, status, error, message) -> None:
    text = {400: "IMAGE is empty", 500: "Stub process 'text_decoder_0_0' is not healthy.", 503: "blip_vqa is not ready"}
    endpoint.status, endpoint.body = status, {"error": text[status]}
    with BlipVqaClient(endpoint.url) as client, pytest.raises(error, match=message) as raised:
        client.infer(FRAME, ["q?"])
    assert type(raised.value) is error
    with pytest.raises(error, match=message):
        ask_async(endpoint.url)


def test_a_short_answer_is_a_server_error(endpoint: Endpoint) -> None:
    endpoint.body = {"outputs": [{"name": SCORES, "datatype": "FP32", "shape": [1, 1], "data": [0.5]}]}
    with BlipVqaClient(endpoint.url) as client:
        with pytest.raises(ServerError, match=r"^expected 2 scores, got 1$"):
            client.infer(FRAME, ["a?", "b?"], scores_only=True)
        with pytest.raises(ServerError, match=r"^expected 1 answers, got None$"):
            client.infer(FRAME, ["a?"])
        endpoint.body = {"outputs": [{"name": ANSWERS, "datatype": "BYTES", "shape": [1, 1], "data": ["no"]}]}
        with pytest.raises(ServerError, match=r"^expected 1 scores, got None$"):
            client.infer(FRAME, ["a?"])
        endpoint.body = {
            "outputs": [
                {"name": SCORES, "datatype": "FP32", "shape": [1, 2], "data": [0.5, 0.25]},
                {"name": ANSWERS, "datatype": "BYTES", "shape": [1, 1], "data": ["sí"]},
            ]
        }
        with pytest.raises(ServerError, match=r"^expected 2 answers, got 1$"):
            client.infer(FRAME, ["a?", "b?"])
        endpoint.body["outputs"][1] |= {"shape": [1, 2], "data": ["sí", "perro"]}
        assert client.infer(FRAME, ["a?", "b?"]) == VqaResult([0.5, 0.25], ["sí", "perro"])


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        ("400", "IMAGE is empty", InvalidRequestError),
        ("StatusCode.INVALID_ARGUMENT", "IMAGE is empty", InvalidRequestError),
        (None, "Read Timed Out", ServerTimeoutError),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", ServerTimeoutError),
        (None, "Failed to CONNECT to remote host", ServerUnavailableError),
        ("StatusCode.UNAVAILABLE", "no healthy upstream", ServerUnavailableError),
        ("500", "Stub process 'x' is not healthy.", ServerError),
    ],
)
def test_tritonclient_statuses_and_messages_map_to_typed_errors(status, message, error) -> None:
    classified = classify(InferenceServerException(msg=message, status=status))
    assert type(classified) is error
    assert str(classified) == (f"[{status}] {message}" if error is ServerError else message)
    assert str(classify(InferenceServerException(msg="", status="500"))) == "[500] [500] "


def test_the_asyncio_deadline_is_the_callers(endpoint: Endpoint) -> None:
    endpoint.delay_s = 1.0
    with pytest.raises(ServerTimeoutError, match=r"no answer within 0\.2s"):
        ask_async(endpoint.url, timeout_s=0.2)


def test_nothing_listening_is_unavailable() -> None:
    probe = Endpoint()
    url = probe.url
    probe.server_close()  # the port is free again: nothing listens there
    with pytest.raises(ServerUnavailableError):
        ask_async(url)
    with BlipVqaClient(url, timeout_s=5) as client, pytest.raises(ServerUnavailableError):
        client.infer(FRAME, ["q?"])


def test_binary_answers_are_decoded_as_utf8() -> None:
    """tritonclient hands BYTES outputs sent as binary data back as bytes; JSON ones as str."""

    class Result:
        def as_numpy(self, name: str) -> np.ndarray:
            if name == SCORES:
                return np.array([[0.5, 0.25]], dtype=np.float32)
            return np.array([["sí".encode(), "perro"]], dtype=object)

    assert parse_result(Result(), 2, scores_only=False) == VqaResult([0.5, 0.25], ["sí", "perro"])
