"""Who may call, and how much a request may carry before it is read: bearer tokens and header limits."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from blip_api.errors import ApiError
from blip_api.settings import ADMIN_TOKEN_ENV, Limits
from blip_api.state import ApiState, State


class HeaderLimits:
    """ASGI middleware: 431 for a request with more than ``max_headers`` headers or ``max_header_bytes`` of them.

    Pure ASGI rather than ``BaseHTTPMiddleware``, so request bodies keep streaming through untouched.
    """

    def __init__(self, app: ASGIApp, limits: Callable[[], Limits]) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            limits, headers = self.limits(), scope["headers"]
            size = sum(len(name) + len(value) + 4 for name, value in headers)
            problem = None
            if len(headers) > limits.max_headers:
                problem = f"{len(headers)} request headers; the limit is {limits.max_headers}"
            elif size > limits.max_header_bytes:
                problem = f"request headers are {size} bytes; the limit is {limits.max_header_bytes}"
            if problem is not None:
                await JSONResponse({"error": problem}, status_code=431)(scope, receive, send)
                return
        await self.app(scope, receive, send)


# The three bearer tokens as OpenAPI security schemes, so that a generated client knows which token a route takes.
# They only declare: the checks are this module's and cameras.py's own (constant time, the 401 and 403 bodies),
# hence auto_error=False (FastAPI's own check would answer 403 for a missing token, where this API says 401).
API_TOKEN = HTTPBearer(
    scheme_name="apiToken", auto_error=False, description="the callers' token (BLIP_API_TOKEN): POST /v1/frames"
)
CAMERA_TOKEN = HTTPBearer(
    scheme_name="cameraToken",
    auto_error=False,
    description="a camera's own token, returned once by PUT /admin/cameras/{camera_id}: that camera's routes only",
)
ADMIN_TOKEN = HTTPBearer(
    scheme_name="adminToken", auto_error=False, description="the admin token (BLIP_API_ADMIN_TOKEN): /admin/*"
)
Declared = HTTPAuthorizationCredentials | None


def bearer_token(request: Request) -> str:
    """The request's bearer token, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"})
    return token


def _check_token(request: Request, state: ApiState, expected: str | None, what: str) -> None:
    if state.settings.insecure_dev:
        return
    if expected is None:
        raise ApiError(403, f"{what} is disabled: no token is configured for it")
    token = bearer_token(request)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise ApiError(401, "invalid bearer token", {"WWW-Authenticate": "Bearer"})


async def caller(request: Request, state: State, _: Annotated[Declared, Depends(API_TOKEN)]) -> None:
    """Dependency: the callers' bearer token."""
    _check_token(request, state, state.settings.token, "the API")


async def admin(request: Request, state: State, _: Annotated[Declared, Depends(ADMIN_TOKEN)]) -> None:
    """Dependency: the admin bearer token."""
    _check_token(request, state, state.settings.admin_token, f"the admin API (set {ADMIN_TOKEN_ENV})")
