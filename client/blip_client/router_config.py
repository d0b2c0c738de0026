"""The router's settings: the ``[router]`` and ``[backends.<name>]`` tables of the API tier's TOML file.

Typed records (pydantic, frozen, no unknown fields). Every refusal is a ``RouterConfigError`` whose message names
the setting and the value, in one line, and starts the way the tests and the operators read it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from blip_contract.records import Record


class RouterConfigError(ValueError):
    """The router configuration is invalid; the message names the setting."""


def is_number(value: object) -> bool:
    """An int or a float; not a bool, which TOML and JSON keep apart from numbers (``weight = true`` is a mistake)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Record(Record):
    error_type = RouterConfigError


class BackendConfig(_Record):
    """One fleet behind the router: the docs' "fleet", which the router and its config call a backend."""

    name: str = Field(description="Letters, digits, '-' or '_': the name in metrics, status and the admin API.")
    url: str = Field(description="host:port of the fleet's Triton HTTP endpoint, without a scheme.")
    weight: float = Field(1.0, description="Share of the traffic, relative to the other fleets; 0 drains it.")

    def __init__(self, name: str, url: str, weight: float = 1.0) -> None:
        super().__init__(name=name, url=url, weight=weight)

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: dict[str, Any]) -> dict[str, Any]:
        name, url, weight = data.get("name"), data.get("url"), data.get("weight", 1.0)
        if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"backend name {name!r} must be letters, digits, '-' or '_'")
        if not isinstance(url, str) or not url or "://" in url:
            raise ValueError(f"backend {name}: url must be host:port without a scheme, got {url!r}")
        if not is_number(weight) or weight < 0:
            raise ValueError(f"backend {name}: weight must be a number >= 0, got {weight!r}")
        return data


class RouterConfig(_Record):
    """The router's settings: its fleets, how often and how it probes them, retries and breakers."""

    backends: tuple[BackendConfig, ...] = Field(description="The fleets, in the order of the file.")
    probe_interval_s: float = Field(1.0, description="Seconds between health probes of each fleet.")
    probe_timeout_s: float = Field(3.0, description="Seconds before a probe fails.")
    request_timeout_s: float = Field(30.0, description="Seconds before one attempt at a frame fails over.")
    unhealthy_after: int = Field(1, description="Failed probes in a row that take a fleet out of rotation.")
    healthy_after: int = Field(2, description="Passed probes in a row that bring it back.")
    breaker_fail_max: int = Field(3, description="Failed calls in a row that open a fleet's circuit breaker.")
    breaker_reset_s: float = Field(10.0, description="Seconds an open breaker waits before one trial call.")
    max_attempts: int = Field(3, description="Fleets tried for one frame before the caller gets a 503.")

    @field_validator("*", mode="before")
    @classmethod
    def _positive(cls, value: Any, info: Any) -> Any:
        if info.field_name != "backends" and (not is_number(value) or value <= 0):
            raise ValueError(f"router.{info.field_name} must be a positive number, got {value!r}")
        return value

    @model_validator(mode="after")
    def _backends(self) -> RouterConfig:
        if not self.backends:
            raise ValueError("at least one backend is needed")
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError(f"backend names must be unique: {names}")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouterConfig:
        settings = dict(data.get("router", {}))
        known = set(cls.model_fields) - {"backends"}
        unknown = set(settings) - known
        if unknown:
            raise RouterConfigError(f"unknown router settings {sorted(unknown)}; known: {sorted(known)}")
        backends = []
        for name, entry in dict(data.get("backends", {})).items():
            extra = set(entry) - {"url", "weight"}
            if extra or "url" not in entry:
                raise RouterConfigError(f"backend {name}: needs url (and optional weight), got keys {sorted(entry)}")
            backends.append(BackendConfig(name=name, url=entry["url"], weight=entry.get("weight", 1.0)))
        return cls(backends=tuple(backends), **settings)
