"""Triton's names for model instances, ``<model>_<group>_<index>`` (``text_decoder_0_1``): one rule, read here."""

from __future__ import annotations

import re

_INSTANCE = re.compile(r"^(?P<model>.+)_(?P<group>\d+)_(?P<index>\d+)$")


def _parts(instance: str) -> re.Match[str]:
    match = _INSTANCE.match(instance)
    if match is None:
        raise ValueError(f"model instance name {instance!r} is not <model>_<group>_<index>")
    return match


def instance_index(instance: str) -> int:
    """The index of an instance within its group: ``text_decoder_0_1`` -> 1."""
    return int(_parts(instance)["index"])


def model_of(instance: str) -> str:
    """The model an instance serves: ``text_decoder_0_1`` -> ``text_decoder``."""
    return _parts(instance)["model"]
