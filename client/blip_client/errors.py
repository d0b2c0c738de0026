"""What can go wrong when asking ``blip_vqa``, typed so that callers map each kind to its own HTTP status.

``InvalidRequestError`` is the caller's mistake (400): retrying it elsewhere would fail the same way. The others
are the server's or the network's: a router fails them over to another backend.
"""

from __future__ import annotations


class BlipVqaError(Exception):
    """Any failure of a ``blip_vqa`` call."""


class InvalidRequestError(BlipVqaError):
    """The server refused the request itself (INVALID_ARG, HTTP 400): the message names what was wrong."""


class ServerUnavailableError(BlipVqaError):
    """The server could not be reached, timed out, or is not ready."""


class ServerTimeoutError(ServerUnavailableError):
    """The server took longer than the caller's deadline: it may still be working on the request."""


class ServerError(BlipVqaError):
    """The server failed while answering a valid request."""


class NoBackendAvailableError(BlipVqaError):
    """The router found no backend that could answer: every one is down, drained or failed this request."""
