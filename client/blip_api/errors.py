"""The API tier's refusal: a status and a message naming what was wrong; every refusal has the body {"error": ...}."""

from __future__ import annotations


class ApiError(Exception):
    """A request refused with ``status``; the message names what was wrong."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
