"""Request ids: each request to the API gets one, which every log line on its way and Triton itself see.

The caller's ``X-Request-ID`` is kept when it is a short printable token (``REQUEST_ID_PATTERN``), else a new one is
made; the response carries it back. The router sends it to the fleet as Triton's request id.
"""

from __future__ import annotations

import uuid

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blip_contract.logs import REQUEST_ID, REQUEST_ID_HEADER, REQUEST_ID_PATTERN

_HEADER = REQUEST_ID_HEADER.lower().encode()


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's id where it is acceptable, else a new one."""
    for name, value in headers:
        if name == _HEADER:
            given = value.decode("latin-1")
            if REQUEST_ID_PATTERN.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


class RequestIds:
    """ASGI middleware: ``REQUEST_ID`` set for the request's whole handling, and ``X-Request-ID`` on the response.
    Pure ASGI, as ``HeaderLimits``: bodies stream through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope["headers"])

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (_HEADER, request_id.encode())]
            await send(message)

        # The request's span (FastAPI's instrumentation, outside this middleware) carries the id too: a log line
        # and a trace of one request are found by the same value.
        trace.get_current_span().set_attribute("blip.request_id", request_id)
        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
