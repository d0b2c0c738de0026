"""One log format for every long-running process (serve, supervisor, API tier, soak): text, or JSON lines.

``BLIP_LOG_LEVEL`` (default info) and ``BLIP_LOG_JSON=1`` (one JSON object a line, for a log collector) set it.
"""

from __future__ import annotations

import json
import logging
import sys

from blip_contract.env import env_default, env_flag

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str | None = None, json_lines: bool | None = None) -> None:
    """Set the root logger once for a process's entry point; arguments win over the environment."""
    handler = logging.StreamHandler(sys.stderr)
    as_json = env_flag("LOG_JSON") if json_lines is None else json_lines
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(
        level=(level or env_default("LOG_LEVEL", "info") or "info").upper(), handlers=[handler], force=True
    )
