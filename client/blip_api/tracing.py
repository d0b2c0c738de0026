"""Request ids: each request to the API gets one, which every log line on its way, its access line and Triton see.

The caller's ``X-Request-ID`` is kept when it is a short printable token (``REQUEST_ID_PATTERN``), else a new one is
made; the response carries it back. The router sends it to the fleet as Triton's request id.
"""

from __future__ import annotations

import time
import uuid

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blip_api.access import ACCESS, AccessRecord, write_access_line
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
    """ASGI middleware, the outermost: ``REQUEST_ID`` set for the request's whole handling, ``X-Request-ID`` on the
    response, and the request's access line (``blip_api.access``) once it is answered. Pure ASGI, as
    ``HeaderLimits``: bodies stream through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope["headers"])
        started = time.perf_counter()
        status = 500  # what the server answers when the app raised before a response started
        record = AccessRecord()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (_HEADER, request_id.encode())]
            await send(message)

        # The request's span (FastAPI's instrumentation, outside this middleware) carries the id too: a log line
        # and a trace of one request are found by the same value.
        trace.get_current_span().set_attribute("blip.request_id", request_id)
        token, noted = REQUEST_ID.set(request_id), ACCESS.set(record)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            write_access_line(scope, status, record, 1000 * (time.perf_counter() - started))
            ACCESS.reset(noted)
            REQUEST_ID.reset(token)
