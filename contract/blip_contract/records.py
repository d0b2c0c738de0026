"""Conventions of the typed records that cross a step (manifest, plan, perf summary, settings, config files):
pydantic models with ``extra="forbid"``, and one line naming what was wrong when one does not validate.

A config file is read whole into one record (``load_file`` / ``validate_file``): an unknown key anywhere in it is
refused with its dotted path and the nearest valid name, so a misspelt setting never passes silently.
"""

from __future__ import annotations

import difflib
import json
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

R = TypeVar("R", bound=BaseModel)


class ConfigFileError(ValueError):
    """A config file that cannot be read or does not validate; the message is one line naming the file."""


def one_line(error: ValidationError, source: str = "", model: type[BaseModel] | None = None) -> str:
    """Every field error of ``error`` as ``where: what``, joined in one line, for a command line's stderr. With the
    record's ``model``, an unknown key reads ``where is not a setting (did you mean ...?)``."""
    parts = []
    # An unknown key first: a misspelt required key also reads as missing, and the misspelling is the cause.
    for item in sorted(error.errors(include_url=False), key=lambda item: item["type"] != "extra_forbidden"):
        if item["type"] == "extra_forbidden" and model is not None:
            parts.append(unknown_key(model, item["loc"]))
        else:
            parts.append(_message(item))
    return (f"{source}: " if source else "") + "; ".join(parts)


def first_error(error: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The message a validator raised (pydantic wraps it), else pydantic's own, naming the field."""
    item = error.errors(include_url=False)[0]
    if item["type"] == "extra_forbidden" and model is not None:
        return unknown_key(model, item["loc"])
    return _message(item)


def _message(item: Mapping[str, Any]) -> str:
    """A validator's own message as it raised it, else ``where: pydantic's message, got <value>``."""
    raised = item.get("ctx", {}).get("error")
    if raised is not None:
        return str(raised)
    where = ".".join(map(str, item["loc"]))
    got = "" if item["type"] == "missing" or isinstance(item.get("input"), dict) else f", got {item.get('input')!r}"
    return f"{where + ': ' if where else ''}{item['msg']}{got}"


def unknown_key(model: type[BaseModel], loc: Sequence[int | str]) -> str:
    """``a.b.key is not a setting (did you mean a.b.kee?)``: the nearest field of the record at ``loc[:-1]``."""
    path = ".".join(map(str, loc))
    known = _field_names_at(model, loc[:-1])
    near = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5) if known else []
    prefix = ".".join(map(str, loc[:-1]))
    if near:
        return f"{path} is not a setting (did you mean {prefix + '.' if prefix else ''}{near[0]}?)"
    return f"{path} is not a setting (known here: {', '.join(sorted(known)) or 'none'})"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The record types an annotation can hold: itself, or inside Optional, Union, tuple, list or dict values."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (dict, Mapping) or (isinstance(origin, type) and issubclass(origin, Mapping)):
        args = args[1:]  # a dict's keys are free names; its values may be records
    if origin is typing.Annotated:
        args = args[:1]
    found: list[type[BaseModel]] = []
    for arg in args:
        if arg is not types.NoneType:
            found.extend(_models_in(arg))
    return found


def _field_names_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """Field names of the record reached by walking ``loc`` from ``model`` (dict keys and list indexes skipped)."""
    current: list[type[BaseModel]] = [model]
    for part in loc:
        following: list[type[BaseModel]] = []
        for record in current:
            field = _by_key(record).get(str(part))
            if field is not None:
                following.extend(_models_in(field.annotation))
            else:  # a dict key or a list index: stay on the value type, which the next part names into
                following.append(record)
        current = following
    names: list[str] = []
    for record in current:
        names.extend(name for name in _by_key(record) if name not in names)
    return names


def _by_key(record: type[BaseModel]) -> dict[str, Any]:
    """A record's fields by the key a file spells them with: the alias where one is set."""
    return {field.alias or name: field for name, field in record.model_fields.items()}


def validate_file(model: type[R], data: Any, source: str | Path) -> R:
    """``data`` (a parsed config file) as one ``model`` record, or ``ConfigFileError`` in one line."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigFileError(one_line(error, str(source), model)) from None


def load_file(model: type[R], path: Path) -> R:
    """Read a TOML or JSON config file whole into one ``model`` record; every key must be one of its fields."""
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigFileError(f"cannot read {path}: {error}") from None
    return validate_file(model, data, path)


class Strict(BaseModel):
    """A section of a config file: no unknown keys, frozen."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Record(BaseModel):
    """A frozen record that refuses unknown fields and raises ``error_type`` with its first error's message, so a
    settings file's mistake reads as one line naming the setting (``router.max_attempts must be ...``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    error_type: ClassVar[type[Exception]] = ValueError

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise self.error_type(first_error(error, type(self))) from None


# The constrained types of every config file and admin call: one rule each, written once. Strict: a TOML or JSON
# ``true`` is not the number 1, and ``"2"`` is not a number (``weight = true`` is a mistake, not a weight).
PositiveNumber = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
NonNegativeNumber = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
PositiveInteger = Annotated[int, Field(strict=True, gt=0)]
NonNegativeInteger = Annotated[int, Field(strict=True, ge=0)]
Probability = Annotated[float, Field(strict=True, gt=0, lt=1)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", description="Letters, digits, '-' or '_'.")]
