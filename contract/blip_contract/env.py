"""Environment defaults of every command line: one rule, one prefix.

A flag's default may come from ``BLIP_<NAME>`` (``BLIP_TARGET``, ``BLIP_HOST_TYPE``, ``BLIP_HTTP_PORT``); the
Makefile exports its variables under these names, the images and Kubernetes manifests set them. An empty value is
unset. Nothing reads an unprefixed variable, so a shell's ``HOST`` or ``MODEL`` never leaks into a command.
"""

from __future__ import annotations

import os

PREFIX = "BLIP_"


def env_name(name: str) -> str:
    return PREFIX + name


def env_default(name: str, default: str | None = None) -> str | None:
    """``BLIP_<name>`` where set and not empty, else ``default``."""
    return os.environ.get(env_name(name)) or default


def env_flag(name: str) -> bool:
    """A yes/no setting: 1, yes, true or on (any case) is yes; anything else, or unset, is no."""
    return (env_default(name) or "").strip().lower() in ("1", "yes", "true", "on")
