"""``/docs`` in a real browser: a headless Chromium, every host but loopback unresolvable, loads Swagger UI from
the API tier itself and lists every route of the OpenAPI document; the page names no other origin."""

from __future__ import annotations

import re
import shutil
import subprocess

import httpx
import pytest

from blip_bench.stack import ApiProcess, write_api_config
from blip_serving.triton.process import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    config = write_api_config(tmp_path_factory.mktemp("docs-ui") / "api.toml", {"neuron": f"127.0.0.1:{free_port()}"})
    process = ApiProcess(config)
    yield process
    process.stop()


def rendered(url: str) -> str:
    """The page's DOM after its scripts ran, fetched by Chromium with no way out of loopback."""
    assert CHROMIUM, "chromium is not installed (apt-get install chromium; .ci/run installs it)"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_docs_load_offline_and_list_every_route(api) -> None:
    page = httpx.get(f"{api.url}/docs", timeout=5)
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    external = re.findall(r"""(?:src|href)=["']((?:https?:)?//[^"']+)""", page.text)
    assert not external, f"the page loads from other origins: {external}"

    dom = rendered(f"{api.url}/docs")
    shown = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    document = httpx.get(f"{api.url}/openapi.json", timeout=5).json()
    assert shown == set(document["paths"]), f"Swagger UI lists {sorted(shown)}"
    assert "Unable to render" not in dom
    assert 'class="btn authorize' in dom, "the Authorize button (the bearer schemes) is shown"


def test_only_the_bundles_files_are_served(api) -> None:
    assert httpx.get(f"{api.url}/docs/assets/swagger-ui-bundle.js", timeout=5).status_code == 200
    assert httpx.get(f"{api.url}/docs/assets/swagger-ui.css", timeout=5).headers["content-type"].startswith("text/css")
    for name in ("__init__.py", "..%2F..%2Fmain.py", "index.html"):
        assert httpx.get(f"{api.url}/docs/assets/{name}", timeout=5).status_code == 404, name
