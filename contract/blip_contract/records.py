"""Conventions of the typed records that cross a step (manifest, plan, perf summary, settings): pydantic models
with ``extra="forbid"``, and one line naming what was wrong when one does not validate."""

from __future__ import annotations

from pydantic import ValidationError


def one_line(error: ValidationError, source: str = "") -> str:
    """Every field error of ``error`` as ``where: what``, joined in one line, for a command line's stderr."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or error.title
        parts.append(f"{where}: {item['msg']}")
    return (f"{source}: " if source else "") + "; ".join(parts)
