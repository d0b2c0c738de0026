"""One log format for every long-running process (serve, supervisor, API tier, soak): text, or JSON lines.

``BLIP_LOG_LEVEL`` (default info) and ``BLIP_LOG_JSON=1`` (one JSON object a line, for a log collector) set it.
Every line carries the request id of the request being handled (``REQUEST_ID``, set by the API tier from the
caller's ``X-Request-ID`` or a new one), which the router also sends to Triton as its request id: one frame can be
followed from the API through the router to the fleet.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

from blip_contract.env import env_default, env_flag

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# The request being handled in this task or thread; "-" in a log line where there is none.
REQUEST_ID: ContextVar[str | None] = ContextVar("blip_request_id", default=None)
REQUEST_ID_HEADER = "X-Request-ID"
# What a caller's X-Request-ID may be for the API to keep it (else it makes one): short, printable, no spaces.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record a handler emits, from ``REQUEST_ID``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(BaseJsonFormatter):
    """python-json-logger's formatter with this project's field names: ``time``, ``level``, ``logger``,
    ``message``, ``request_id`` (left out where there is none), ``exception`` where one was logged, and every
    ``extra`` field a call passes (the API tier's access line: method, route, status, latency_ms, ...)."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "exc_info": "exception"},
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        if log_data.get("request_id") == "-":
            del log_data["request_id"]
        log_data.pop("color_message", None)  # uvicorn's message again, with terminal colour codes


def configure_logging(level: str | None = None, json_lines: bool | None = None) -> None:
    """Set the root logger once for a process's entry point; arguments win over the environment."""
    handler = logging.StreamHandler(sys.stderr)
    as_json = env_flag("LOG_JSON") if json_lines is None else json_lines
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(
        level=(level or env_default("LOG_LEVEL", "info") or "info").upper(), handlers=[handler], force=True
    )
