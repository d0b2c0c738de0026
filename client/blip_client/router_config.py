"""The router's settings: the ``[router]`` and ``[backends.<name>]`` tables of the API tier's TOML file.

Typed records (pydantic, frozen, no unknown fields, constrained types from ``blip_contract.records``). Every refusal
is a ``RouterConfigError`` whose message names the setting and the value in one line; an unknown key names the
nearest valid one.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from blip_contract.records import (
    Name,
    NonNegativeNumber,
    PositiveInteger,
    PositiveNumber,
    Record,
    Strict,
    first_error,
)


class RouterConfigError(ValueError):
    """The router configuration is invalid; the message names the setting."""


HostPort = Field(pattern=r"^[^\s/]+:[0-9]+$", description="host:port of the fleet's Triton HTTP endpoint, no scheme.")


class _Record(Record):
    error_type = RouterConfigError


class BackendConfig(_Record):
    """One fleet behind the router: the docs' "fleet", which the router and its config call a backend."""

    name: Name = Field(description="The name in metrics, status and the admin API.")
    url: str = HostPort
    weight: NonNegativeNumber = Field(
        1.0, description="Share of the traffic, relative to the other fleets; 0 drains it."
    )

    def __init__(self, name: str, url: str, weight: float = 1.0) -> None:
        super().__init__(name=name, url=url, weight=weight)


_WEIGHT = TypeAdapter(NonNegativeNumber)


def checked_weight(value: Any) -> float:
    """A routing weight from the admin API, by the same rule as the file's (a number >= 0, not a bool)."""
    try:
        return float(_WEIGHT.validate_python(value))
    except ValidationError as error:
        raise RouterConfigError(f"weight: {first_error(error)}") from None


class RouterSection(Strict):
    """``[router]``: how often and how the router probes, retries and breaks."""

    probe_interval_s: PositiveNumber = Field(1.0, description="Seconds between health probes of each fleet.")
    probe_timeout_s: PositiveNumber = Field(3.0, description="Seconds before a probe fails.")
    request_timeout_s: PositiveNumber = Field(30.0, description="Seconds before one attempt at a frame fails over.")
    unhealthy_after: PositiveInteger = Field(1, description="Failed probes in a row that take a fleet out of rotation.")
    healthy_after: PositiveInteger = Field(2, description="Passed probes in a row that bring it back.")
    breaker_fail_max: PositiveInteger = Field(3, description="Failed calls in a row that open a fleet's breaker.")
    breaker_reset_s: PositiveNumber = Field(10.0, description="Seconds an open breaker waits before one trial call.")
    max_attempts: PositiveInteger = Field(3, description="Fleets tried for one frame before the caller gets a 503.")


class BackendEntry(Strict):
    """``[backends.<name>]``: one fleet's endpoint and weight."""

    url: str = HostPort
    weight: NonNegativeNumber = Field(
        1.0, description="Share of the traffic, relative to the other fleets; 0 drains it."
    )


class CanarySection(Strict):
    """``[canary]``: which fleet is the candidate, how much of the current fleet's traffic it shadows, and what
    promotion asks of it."""

    candidate: Name = Field(description="The backend that serves the new checkpoint; its weight must be 0.")
    current: Name = Field(description="The backend whose answers callers get and the candidate's are compared with.")
    share: float = Field(0.1, ge=0, le=1, description="Share of the current fleet's frames mirrored to the candidate.")
    min_agreement: float = Field(0.98, ge=0, le=1, description="Per-behaviour answer agreement promotion needs.")
    min_frames: PositiveInteger = Field(50, description="Mirrored frames promotion needs.")
    steps: tuple[float, ...] = Field(
        (0.1, 0.5, 1.0), description="The candidate's share of routed traffic after each promotion; ends at 1."
    )
    max_in_flight: PositiveInteger = Field(8, description="Mirrors at once; a frame past that is not mirrored.")

    @model_validator(mode="after")
    def _steps(self) -> CanarySection:
        if self.candidate == self.current:
            raise ValueError("candidate and current must be two backends")
        if not self.steps or self.steps[-1] != 1 or any(not 0 < s <= 1 for s in self.steps):
            raise ValueError(f"steps must be shares in (0, 1] ending at 1, got {list(self.steps)}")
        if list(self.steps) != sorted(set(self.steps)):
            raise ValueError(f"steps must rise, got {list(self.steps)}")
        return self


def check_canary(canary: CanarySection, backends: dict[str, BackendEntry]) -> None:
    """The canary's fleets are backends of the file, and the candidate takes no routed traffic before promotion."""
    for role in ("candidate", "current"):
        name = getattr(canary, role)
        if name not in backends:
            raise RouterConfigError(f"canary.{role}: no backend named {name!r} (backends: {', '.join(backends)})")
    if backends[canary.candidate].weight != 0:
        raise RouterConfigError(
            f"backends.{canary.candidate}.weight must be 0 while it is the canary's candidate: it takes routed "
            "traffic only when promoted (POST /admin/canary/promote)"
        )


class RouterFile(Strict):
    """The router's part of a config file: ``[router]`` and ``[backends.<name>]``."""

    router: RouterSection = Field(default_factory=RouterSection)
    backends: dict[Name, BackendEntry] = Field(default_factory=dict)


class RouterConfig(_Record, RouterSection):
    """The router's settings: its fleets, how often and how it probes them, retries and breakers."""

    backends: tuple[BackendConfig, ...] = Field(description="The fleets, in the order of the file.")

    @model_validator(mode="after")
    def _backends(self) -> RouterConfig:
        if not self.backends:
            raise ValueError("at least one backend is needed")
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError(f"backend names must be unique: {names}")
        return self

    @classmethod
    def from_sections(cls, router: RouterSection, backends: dict[str, BackendEntry]) -> RouterConfig:
        return cls(
            backends=tuple(BackendConfig(name, entry.url, entry.weight) for name, entry in backends.items()),
            **router.model_dump(),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouterConfig:
        """``[router]`` and ``[backends]`` of a parsed file that holds nothing else (tests, benchmarks)."""
        try:
            parsed = RouterFile.model_validate(data)
        except ValidationError as error:
            raise RouterConfigError(first_error(error, RouterFile)) from None
        return cls.from_sections(parsed.router, parsed.backends)
