"""Conventions of the typed records that cross a step (manifest, plan, perf summary, settings): pydantic models
with ``extra="forbid"``, and one line naming what was wrong when one does not validate."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError


def one_line(error: ValidationError, source: str = "") -> str:
    """Every field error of ``error`` as ``where: what``, joined in one line, for a command line's stderr."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or error.title
        parts.append(f"{where}: {item['msg']}")
    return (f"{source}: " if source else "") + "; ".join(parts)


def first_error(error: ValidationError) -> str:
    """The message a validator raised (pydantic wraps it), else pydantic's own, naming the field."""
    item = error.errors(include_url=False)[0]
    raised = item.get("ctx", {}).get("error")
    if raised is not None:
        return str(raised)
    return f"{'.'.join(map(str, item['loc']))}: {item['msg']}"


class Record(BaseModel):
    """A frozen record that refuses unknown fields and raises ``error_type`` with its first error's message, so a
    settings file's mistake reads as one line naming the setting (``router.max_attempts must be ...``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    error_type: ClassVar[type[Exception]] = ValueError

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise self.error_type(first_error(error)) from None
