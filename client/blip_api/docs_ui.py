"""Swagger UI at ``/docs``, from files this process serves itself: the page loads nothing from a CDN.

The assets are Swagger UI 5's bundle and stylesheet as the ``fastapi-swagger`` package ships them (Swagger UI 5
reads OpenAPI 3.1, which FastAPI writes; the ``swagger-ui-bundle`` package ships 4.15, from before 3.1). The page's
Content-Security-Policy allows this origin only, so a browser would refuse any outside script, style or font:
``tests/integration/test_docs_ui.py`` loads it in a headless Chromium with every other host unreachable.

The page and its assets are open, like ``/openapi.json``: what the API accepts is no secret, and each route
still asks for its token (the page's Authorize button takes the three bearer tokens).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from blip_api.errors import ApiError

docs_ui = APIRouter(include_in_schema=False)

ASSETS = resources.files("fastapi_swagger") / "resources"
# name -> media type: what /docs/assets serves, and nothing else of the package.
SERVED = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
# Swagger UI's initialiser is an inline script, and it styles with inline attributes; its images are data: URLs.
POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
CACHE = "public, max-age=86400"


@docs_ui.get("/docs")
async def docs_page() -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="BLIP VQA pet-camera API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon-32x32.png",
        swagger_ui_parameters={"persistAuthorization": False, "tryItOutEnabled": False},
    )
    page.headers["Content-Security-Policy"] = POLICY
    return page


@docs_ui.get("/docs/assets/{name}")
async def docs_asset(name: str) -> Response:
    media_type = SERVED.get(name)
    if media_type is None:
        raise ApiError(404, f"no such asset: {name[:80]}")
    return Response((ASSETS / name).read_bytes(), media_type=media_type, headers={"Cache-Control": CACHE})
