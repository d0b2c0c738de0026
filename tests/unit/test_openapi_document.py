"""docs/openapi.json is the contract: the document the API serves for client/api.toml, byte for byte, with a
bearer scheme on every route that takes a token. ``make openapi`` writes it after a deliberate change."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from blip_api.app import create_app, openapi_text
from blip_api.settings import ApiSettings
from blip_contract.version import __version__
from tests.conftest import ROOT

COMMITTED = ROOT / "docs" / "openapi.json"
OPEN = {"/livez", "/healthz", "/metrics"}


def served() -> dict:
    settings = ApiSettings.load(ROOT / "client" / "api.toml", env={}, insecure_dev=True)
    app = create_app(settings)
    response = TestClient(app).get("/openapi.json")  # no lifespan: the document needs no store or fleet
    assert response.status_code == 200
    assert openapi_text(app) == json.dumps(response.json(), indent=2, ensure_ascii=False) + "\n"
    return response.json()


def test_the_committed_document_is_the_served_one() -> None:
    committed = json.loads(COMMITTED.read_text())
    document = served()
    assert committed == document, "docs/openapi.json differs from the served document: `make openapi`, then review"


def test_every_route_but_the_probes_declares_its_bearer_token() -> None:
    document = served()
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"apiToken", "cameraToken", "adminToken"}
    assert all(scheme == {**scheme, "type": "http", "scheme": "bearer"} for scheme in schemes.values())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            names = {name for requirement in operation.get("security", []) for name in requirement}
            if path in OPEN:
                assert not names, f"{method} {path} is open"
            elif path.startswith("/admin"):
                assert names == {"adminToken"}, f"{method} {path}: {names}"
            elif path == "/v1/frames":
                assert names == {"apiToken"}
            else:
                assert "cameraToken" in names, f"{method} {path}: {names}"


def test_the_version_is_the_packages() -> None:
    assert served()["info"]["version"] == __version__
