"""The API tier's settings: one TOML file (``[api]``, ``[behaviors]``, plus the router's sections) and the env.

Secrets never live in the file: the bearer tokens come from ``BLIP_API_TOKEN`` and ``BLIP_API_ADMIN_TOKEN``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from blip_client.router import RouterConfig, RouterConfigError
from blip_contract import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_QUESTIONS

TOKEN_ENV = "BLIP_API_TOKEN"
ADMIN_TOKEN_ENV = "BLIP_API_ADMIN_TOKEN"

DEFAULT_BEHAVIORS = {
    "barking": "Is the dog barking?",
    "chewing_furniture": "Is the dog chewing furniture?",
    "on_the_couch": "Is the dog on the couch?",
    "eating": "Is the pet eating?",
    "sleeping": "Is the pet sleeping?",
}


class SettingsError(ValueError):
    """The API tier cannot start with these settings; the message names the setting."""


@dataclass(frozen=True)
class Limits:
    """What one request may carry; larger or more is refused before any backend is asked."""

    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_questions: int = DEFAULT_MAX_QUESTIONS
    max_question_chars: int = 200
    # HTTP framing: uvicorn's h11 caps only a header block still arriving; the app caps every request's.
    max_header_bytes: int = 16 * 1024
    max_headers: int = 64

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int) or value < 1:
                raise SettingsError(f"api.{item.name} must be a positive integer, got {value!r}")


DEFAULT_ALERT_THRESHOLD = 0.5


@dataclass(frozen=True)
class ApiSettings:
    router: RouterConfig
    limits: Limits = Limits()
    behaviors: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_BEHAVIORS))
    # A question alerts when P(yes) against no reaches this ([alerts] threshold).
    alert_threshold: float = DEFAULT_ALERT_THRESHOLD
    token: str | None = None
    admin_token: str | None = None
    insecure_dev: bool = False
    config_path: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.alert_threshold, int | float) or not 0.0 < self.alert_threshold < 1.0:
            raise SettingsError(f"alerts.threshold must be a probability between 0 and 1, got {self.alert_threshold!r}")
        if not self.insecure_dev and not self.token:
            raise SettingsError(
                f"no API token: set {TOKEN_ENV} (bearer token the cameras send), or run in insecure dev mode "
                "(--insecure-dev / INSECURE_DEV=1), which accepts every request unauthenticated"
            )

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        env: dict[str, str] | None = None,
        insecure_dev: bool = False,
        path: Path | None = None,
    ) -> ApiSettings:
        env = dict(os.environ) if env is None else env
        try:
            router = RouterConfig.from_dict(data)
            limits = Limits(**data.get("api", {}))
        except (RouterConfigError, TypeError) as error:
            raise SettingsError(str(error)) from error
        behaviors = data.get("behaviors", DEFAULT_BEHAVIORS)
        if not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in behaviors.items()):
            raise SettingsError("[behaviors] maps a behavior name to its question, both strings")
        return cls(
            router=router,
            limits=limits,
            behaviors=dict(behaviors),
            alert_threshold=data.get("alerts", {}).get("threshold", DEFAULT_ALERT_THRESHOLD),
            token=env.get(TOKEN_ENV) or None,
            admin_token=env.get(ADMIN_TOKEN_ENV) or None,
            insecure_dev=insecure_dev,
            config_path=path,
        )

    @classmethod
    def load(cls, path: Path, *, env: dict[str, str] | None = None, insecure_dev: bool = False) -> ApiSettings:
        return cls.from_dict(read_toml(path), env=env, insecure_dev=insecure_dev, path=path)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SettingsError(f"cannot read config {path}: {error}") from error
