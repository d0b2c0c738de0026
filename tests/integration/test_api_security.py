"""The API tier as `make api` runs it (uvicorn, h11, real tokens) in front of a real fleet: schemathesis against
its OpenAPI document with authentication, and the security pass (error bodies, header and multipart limits, CORS,
what the fleet listens on, model control).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket

import httpx
import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from blip_bench.stack import ADMIN, AUTH, ApiProcess, write_api_config
from blip_client.client import BlipVqaClient
from blip_serving.triton.process import TritonServer
from tests.conftest import INVALID_IMAGES, VALID_IMAGES

# What an error body must never show: a traceback, a source file, a path inside the installation.
LEAKS = re.compile(r"Traceback|File \"|\.py\b|site-packages|/work/|/tmp/|/home/|/usr/lib|0x[0-9a-f]{6,}")


@pytest.fixture(scope="module")
def fleet(tiny_build):
    server = TritonServer(tiny_build.repository, "cpu").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(fleet, tmp_path_factory):
    config = tmp_path_factory.mktemp("api-security") / "api.toml"
    write_api_config(config, {"neuron": fleet.http_url}, {"neuron": 1})
    process = ApiProcess(config)
    yield process
    process.stop()


WEIGHT = "PUT /admin/backends/{name}/weight"
# An open stream never ends by itself (heartbeats every 15 s): its cases live in tests/integration/test_events.py.
STREAM = "GET /v1/cameras/{camera_id}/events/stream"
FUZZ_CAMERA = "fuzz-cam"


@pytest.fixture(scope="module")
def camera_token(api) -> str:
    """A real camera's token: the camera routes are fuzzed past their auth, on this camera."""
    created = httpx.put(f"{api.url}/admin/cameras/{FUZZ_CAMERA}", json={}, headers=ADMIN, timeout=10)
    assert created.status_code == 201, created.text
    return created.json()["token"]


def operations(api: ApiProcess) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    # The right token goes with every case (below); the document's bearer schemes are not negated, since a case
    # "without" its token would still carry it. Missing and wrong tokens have tests of their own.
    schema.config.generation.update(with_security_parameters=False)
    return [result.ok() for result in schema.get_all_operations()]


FUZZ_API = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=40,
    suppress_health_check=list(HealthCheck),
)


def fuzz_operation(operation: schemathesis.APIOperation, mode: GenerationMode, camera_token: str) -> set[int]:
    """Run schemathesis's cases for one operation (its strategy, driven by hypothesis here: schemathesis's pytest
    plugin does not load under pytest 9), every check but one; the statuses seen. Each route gets its own token:
    the admin token on /admin, a real camera's on its camera routes (valid cases name that camera), the callers'
    token on /v1/frames."""
    statuses: set[int] = set()
    camera_route = "{camera_id}" in operation.path and not operation.path.startswith("/admin")
    if operation.path.startswith("/admin"):
        headers = ADMIN
    elif camera_route:
        headers = {"Authorization": f"Bearer {camera_token}"}
    else:
        headers = AUTH

    @FUZZ_API
    @given(case=operation.as_strategy(mode))
    def call(case) -> None:
        if camera_route and mode is GenerationMode.POSITIVE:
            case.path_parameters["camera_id"] = FUZZ_CAMERA
        # Excluded: that a schema-valid frame is accepted. Any bytes are a valid binary string, but most are not
        # an image, and the 400 naming that is the documented answer.
        response = case.call_and_validate(headers=headers, timeout=30, excluded_checks=[positive_data_acceptance])
        statuses.add(response.status_code)
        assert response.status_code < 500
        assert not LEAKS.search(response.text), response.text[:500]

    try:
        call()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid case could be generated"
        return {0}  # takes nothing that could be made invalid (GET /healthz)
    return statuses


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_operation_answers_only_documented_statuses_and_never_a_500(api, camera_token, mode) -> None:
    """Every operation but the weight route, with its token; generated bodies are mostly not images and must be
    refused, never crash anything."""
    seen = {
        operation.label: fuzz_operation(operation, mode, camera_token)
        for operation in operations(api)
        if operation.label not in (WEIGHT, STREAM)
    }
    print(f"\nschemathesis {mode.value}: statuses by operation (0: nothing to negate) {seen}")
    assert all(seen.values()), "every operation was called"
    if mode is GenerationMode.POSITIVE:
        assert 200 in seen["GET /v1/cameras/{camera_id}/events"], "the camera routes are fuzzed past their auth"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_the_weight_route_in_a_run_of_its_own(api, camera_token, mode) -> None:
    """A valid case may drain the only fleet (weight 0), after which 503s are right: this route runs alone,
    and the fleet's weight is put back after each run."""
    (weight,) = [operation for operation in operations(api) if operation.label == WEIGHT]
    try:
        assert fuzz_operation(weight, mode, camera_token)
    finally:
        restored = httpx.put(f"{api.url}/admin/backends/neuron/weight", json={"weight": 1}, headers=ADMIN)
        assert restored.status_code == 200, restored.text


def raw_http(api: ApiProcess, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


@pytest.mark.parametrize(
    ("name", "request_bytes"),
    [
        ("one huge header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"),
        ("many headers", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-N: a\r\n" * 200 + b"\r\n"),
    ],
)
def test_oversize_header_blocks_get_431_and_the_api_keeps_serving(api, name, request_bytes) -> None:
    answer = raw_http(api, request_bytes)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert httpx.get(f"{api.url}/healthz", timeout=5).status_code == 200


def test_a_header_flood_is_cut_off_by_the_parser_before_it_is_buffered(api) -> None:
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        with contextlib.suppress(OSError):  # the server may close while headers are still being sent
            for _ in range(200):  # 200 x 4 KiB, well past the parser's 64 KiB buffer
                connection.sendall(b"X-Flood: " + b"a" * 4096 + b"\r\n")
        with contextlib.suppress(OSError):
            answer = connection.recv(4096)
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), answer[:200]
    assert httpx.get(f"{api.url}/healthz", timeout=5).status_code == 200


def post_multipart(api: ApiProcess, fields: dict, files=None, **options) -> httpx.Response:
    """A frame as multipart: one image file unless ``files`` says otherwise."""
    files = files or {"image": ("a.jpg", VALID_IMAGES[0].read_bytes(), "image/jpeg")}
    return httpx.post(f"{api.url}/v1/frames", files=files, data=fields, headers=AUTH, timeout=30, **options)


def test_multipart_limits_refuse_extra_files_parts_and_fields(api) -> None:
    image = ("a.jpg", VALID_IMAGES[0].read_bytes(), "image/jpeg")
    two_files = post_multipart(api, {"behavior": "barking"}, files=[("image", image), ("image", image)])
    assert two_files.status_code == 400 and "files" in two_files.json()["error"].lower()
    many_fields = post_multipart(api, {f"field{i}": "x" for i in range(200)})
    assert many_fields.status_code == 400 and "fields" in many_fields.json()["error"].lower()
    huge_field = post_multipart(api, {"question": "x" * 100_000})
    assert huge_field.status_code == 400 and "size" in huge_field.json()["error"].lower()
    fine = post_multipart(api, {"behavior": "barking"})
    assert fine.status_code == 200, fine.text


def test_no_cors_headers_for_any_origin(api) -> None:
    origin = {"Origin": "https://attacker.example"}
    preflight = httpx.options(
        f"{api.url}/v1/frames",
        headers=origin | {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
        timeout=5,
    )
    simple = httpx.get(f"{api.url}/healthz", headers=origin, timeout=5)
    for response in (preflight, simple):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")], response.headers


def test_error_bodies_name_the_problem_without_internals(api) -> None:
    image = VALID_IMAGES[0].read_bytes()
    url = f"{api.url}/v1/frames"
    cases = [
        httpx.post(url, content=image, params={"behavior": "barking"}, headers={"Content-Type": "image/jpeg"}),
        httpx.post(url, content=image, headers=AUTH | {"Content-Type": "text/plain"}),
        httpx.post(url, content=b"--x\r\n\r\n", headers=AUTH | {"Content-Type": "multipart/form-data; boundary=x"}),
        httpx.post(url, content=image, params={"behavior": "howling"}, headers=AUTH | {"Content-Type": "image/jpeg"}),
        httpx.put(f"{api.url}/admin/backends/neuron/weight", content=b"{bad json", headers=ADMIN),
        httpx.put(f"{api.url}/admin/backends/nobody/weight", json={"weight": 1}, headers=ADMIN),
        httpx.get(f"{api.url}/redoc"),  # /docs is served (self-hosted Swagger UI); FastAPI's ReDoc page is not
        httpx.get(f"{api.url}/no/such/route"),
        httpx.get(f"{api.url}/admin/deliveries", params={"limt": "5"}, headers=ADMIN),
    ] + [
        httpx.post(
            url,
            content=path.read_bytes(),
            params={"behavior": "barking"},
            headers=AUTH | {"Content-Type": "image/jpeg"},
            timeout=30,
        )
        for path in INVALID_IMAGES
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, (response.request.url, response.status_code, response.text)
        assert not LEAKS.search(response.text), response.text
    assert "server" not in cases[0].headers, "uvicorn's Server header is off"


def test_a_json_false_is_not_a_weight_and_does_not_drain_the_fleet(api) -> None:
    """pydantic's lax mode once took ``false`` as weight 0: the fleet was drained by a malformed admin call."""
    url = f"{api.url}/admin/backends/neuron/weight"
    for body in ({"weight": False}, {"weight": "0"}, {"weight": 1, "extra": True}):
        response = httpx.put(url, json=body, headers=ADMIN, timeout=5)
        assert response.status_code == 422, (body, response.status_code, response.text)
    backends = httpx.get(f"{api.url}/admin/backends", headers=ADMIN, timeout=5)
    assert backends.status_code == 200 and backends.json()["neuron"]["weight"] > 0


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def own_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (none in some sandboxes)."""
    return [
        a.address
        for addresses in psutil.net_if_addrs().values()
        for a in addresses
        if a.family == socket.AF_INET and not is_loopback(a.address)
    ]


def test_the_fleet_listens_on_loopback_only_and_its_model_control_is_closed(fleet) -> None:
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(fleet.process.pid).net_connections("inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert {port for _, port in listening} >= {fleet.http_port, fleet.grpc_port, fleet.metrics_port}
    assert all(is_loopback(ip) for ip, _ in listening), listening
    for address in own_addresses():  # and nothing answers on this machine's other addresses
        for port in (fleet.http_port, fleet.grpc_port, fleet.metrics_port):
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=2).close()

    base = f"http://{fleet.http_url}/v2/repository/models"
    for action, model in (("unload", "blip_vqa"), ("load", "blip_vqa"), ("load", "image_encoder")):
        response = httpx.post(f"{base}/{model}/{action}", timeout=10)
        assert response.status_code >= 400, f"{action} {model} was allowed: {response.text}"
        assert "not allowed" in response.text or "polling" in response.text or "mode" in response.text, response.text
    assert httpx.get(f"http://{fleet.http_url}/v2/models/blip_vqa/ready", timeout=5).status_code == 200


def test_supervised_model_control_answers_only_the_supervisors_secret(tiny_build) -> None:
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    from blip_serving.triton.control import MODEL_CONTROL_HEADER

    with TritonServer(tiny_build.repository, "cpu", model_control=True) as server:
        index = f"http://{server.http_url}/v2/repository/index"
        assert httpx.post(index, timeout=5).status_code == 403
        assert httpx.post(index, headers={MODEL_CONTROL_HEADER: "guess"}, timeout=5).status_code == 403
        unload = f"http://{server.http_url}/v2/repository/models/blip_vqa/unload"
        assert httpx.post(unload, headers={MODEL_CONTROL_HEADER: "guess"}, timeout=5).status_code == 403
        stranger = grpc.InferenceServerClient(server.grpc_url)
        with pytest.raises(InferenceServerException, match=r"restricted|PERMISSION|expecting header"):
            stranger.unload_model("blip_vqa")
        stranger.close()
        assert server.model_control_secret not in server.recent_log(2000), "the secret is not logged"
        secret = {MODEL_CONTROL_HEADER: server.model_control_secret}
        assert httpx.post(index, headers=secret, timeout=5).status_code == 200
        server.model_control.reload("blip_vqa")  # the supervisor's own path: unload, then load
        with BlipVqaClient(server.http_url) as client:
            assert len(client.scores(VALID_IMAGES[0].read_bytes(), ["is it?"])) == 1


def test_what_schemathesis_found_stays_fixed(api) -> None:
    """Regression cases from the schemathesis runs (see docs/security.md)."""
    # Questions in the query string of a multipart request were silently dropped, then refused with a 400 the
    # OpenAPI document did not allow for: now they are asked, query's first, then the form's.
    mixed = post_multipart(api, {"behavior": "barking"}, params={"question": "Is it?"})
    assert mixed.status_code == 200, mixed.text
    assert [(r["behavior"], r["question"]) for r in mixed.json()["results"]][1] == (None, "Is it?")
    assert len(mixed.json()["results"]) == 2
    # An unknown query parameter is refused with either body.
    stray = post_multipart(api, {"behavior": "barking"}, params={"behaviour": "eating"})
    assert stray.status_code == 400 and "behaviour" in stray.json()["error"]
    # Unknown fields were ignored: a camera's typo ("behaviour") silently dropped what it asked.
    typo = post_multipart(api, {"question": "Is it?", "behaviour": "barking"})
    assert typo.status_code == 400 and "behaviour" in typo.json()["error"]
    raw_typo = httpx.post(
        f"{api.url}/v1/frames",
        content=VALID_IMAGES[0].read_bytes(),
        params={"question": "Is it?", "behaviour": "barking"},
        headers=AUTH | {"Content-Type": "image/jpeg"},
        timeout=30,
    )
    assert raw_typo.status_code == 400 and "behaviour" in raw_typo.json()["error"]
    # A body FastAPI cannot parse was an undocumented 400 with {"detail": ...}.
    unparsable = httpx.put(
        f"{api.url}/admin/backends/neuron/weight",
        content="u\udcff'".encode("utf-8", "surrogateescape"),
        headers=ADMIN | {"Content-Type": "application/json"},
        timeout=5,
    )
    assert unparsable.status_code == 400 and set(unparsable.json()) == {"error"}
    document = httpx.get(f"{api.url}/openapi.json", timeout=5).json()
    assert "400" in document["paths"]["/admin/backends/{name}/weight"]["put"]["responses"]
    assert "text/plain" in document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    frames = document["paths"]["/v1/frames"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert frames["properties"]["behavior"]["items"]["enum"] == sorted(
        ["barking", "chewing_furniture", "on_the_couch", "eating", "sleeping"]
    )
    # Not required in the form: a question may come in the query instead (the 400 for neither is documented).
    assert "anyOf" not in frames and frames["required"] == ["image"]
    assert frames["additionalProperties"] is False
    # Unknown query parameters were ignored on the routes that declare theirs: now a 400 naming them.
    misspelt = httpx.get(f"{api.url}/admin/deliveries", params={"limt": "5"}, headers=ADMIN, timeout=5)
    assert misspelt.status_code == 400 and "limt" in misspelt.json()["error"]
