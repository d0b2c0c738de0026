"""The access line: one log line per request, and uvicorn's own lines in the API tier's one log format.

When a response has been sent (or the request failed with none), one line goes to the
``blip_api.access`` logger with the method, the route (its template, ``/v1/cameras/{camera_id}/frames``, so that
lines group by route), the status, the camera where the route names one, the backend that answered and the attempts
it took where a fleet was asked, and the latency; the request id comes with every line. ``blip_api.tracing``'s
middleware, the outermost, writes it. Under ``BLIP_LOG_JSON=1`` these are fields of the JSON object; in text they are the message.

The handlers that ask a fleet say which one answered with ``note_answer``: the record lives in a context variable
that the middleware sets for the request's whole handling, so no handler passes it around.

Probes and scrapes (``/livez``, ``/healthz``, ``/metrics``), which a kubelet and Prometheus send every few seconds,
are logged at DEBUG: at INFO the log holds the traffic.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from starlette.types import Scope

from blip_client.router_backend import RoutedAnswer

log = logging.getLogger("blip_api.access")

QUIET_ROUTES = frozenset({"/livez", "/healthz", "/metrics"})
# An unmatched path is logged as it came, cut to this length (a 404 scan must not write megabyte lines).
MAX_PATH_CHARS = 200

# uvicorn's loggers hand their records to the root logger, which ``configure_logging`` set up (text or JSON, with
# the request id): ``uvicorn.run(log_config=...)`` applies this instead of uvicorn's own handlers and formats.
# uvicorn's access logger is left without handlers: this module writes the one access line, with more in it.
UVICORN_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {
        "uvicorn": {"handlers": [], "propagate": True},
        "uvicorn.error": {"handlers": [], "propagate": True},
        "uvicorn.access": {"handlers": [], "propagate": False},
    },
}


@dataclass
class AccessRecord:
    """What the handlers add to a request's access line."""

    backend: str | None = None
    attempts: int | None = None


ACCESS: ContextVar[AccessRecord | None] = ContextVar("blip_access", default=None)


def note_answer(routed: RoutedAnswer) -> None:
    """The backend that answered this request, and the attempts it took (a failover makes it 2 or more)."""
    record = ACCESS.get()
    if record is not None:
        record.backend, record.attempts = routed.backend, routed.attempts


def route_of(scope: Scope) -> str:
    """The matched route's template, else the path as sent (cut to ``MAX_PATH_CHARS``)."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else str(scope.get("path", ""))[:MAX_PATH_CHARS]


def write_access_line(scope: Scope, status: int, record: AccessRecord, latency_ms: float) -> None:
    """The request's line: written by ``blip_api.tracing.RequestIds`` once the response is sent, request id set."""
    route = route_of(scope)
    camera = scope.get("path_params", {}).get("camera_id")
    fields = {
        "method": scope["method"],
        "route": route,
        "status": status,
        "camera": camera,
        "backend": record.backend,
        "attempts": record.attempts,
        "latency_ms": round(latency_ms, 2),
    }
    text = f"{fields['method']} {route} {status} {latency_ms:.1f} ms"
    text += "".join(f" {name}={fields[name]}" for name in ("camera", "backend", "attempts") if fields[name])
    log.log(logging.DEBUG if route in QUIET_ROUTES else logging.INFO, text, extra=fields)
