"""blip_client.canary's settings: ``[canary]`` is refused in one line unless it names two backends of the file, the
candidate drained (weight 0), and steps that rise to 1. Its behaviour on live frames is
tests/integration/test_canary.py's."""

from __future__ import annotations

import pytest

from blip_api.settings import ApiSettings, SettingsError

ENV = {"BLIP_API_TOKEN": "t", "BLIP_DB_URL": "sqlite://"}


def settings(canary: dict, candidate_weight: float = 0) -> ApiSettings:
    data = {
        "backends": {"neuron": {"url": "a:8000"}, "next": {"url": "b:8000", "weight": candidate_weight}},
        "canary": canary,
    }
    return ApiSettings.from_dict(data, env=ENV)


def test_a_canary_over_a_drained_candidate_is_taken_with_its_defaults() -> None:
    canary = settings({"candidate": "next", "current": "neuron"}).canary
    assert canary is not None and (canary.share, canary.min_agreement, canary.steps) == (0.1, 0.98, (0.1, 0.5, 1.0))
    assert ApiSettings.from_dict({"backends": {"neuron": {"url": "a:8000"}}}, env=ENV).canary is None


@pytest.mark.parametrize(
    ("canary", "weight", "message"),
    [
        (
            {"candidate": "gone", "current": "neuron"},
            0,
            "canary.candidate: no backend named 'gone' (backends: neuron, next)",
        ),
        ({"candidate": "next", "current": "gpu"}, 0, "canary.current: no backend named 'gpu'"),
        (
            {"candidate": "next", "current": "neuron"},
            1,
            "backends.next.weight must be 0 while it is the canary's candidate",
        ),
        ({"candidate": "neuron", "current": "neuron"}, 0, "candidate and current must be two backends"),
        (
            {"candidate": "next", "current": "neuron", "steps": [0.5, 0.9]},
            0,
            "steps must be shares in (0, 1] ending at 1",
        ),
        ({"candidate": "next", "current": "neuron", "steps": [0.5, 0.1, 1.0]}, 0, "steps must rise"),
        (
            {"candidate": "next", "current": "neuron", "share": 1.5},
            0,
            "canary.share: Input should be less than or equal to 1",
        ),
        (
            {"candidate": "next", "current": "neuron", "shares": 0.5},
            0,
            "canary.shares is not a setting (did you mean canary.share?)",
        ),
    ],
)
def test_a_wrong_canary_is_refused_naming_what_is_wrong(canary, weight, message) -> None:
    with pytest.raises(SettingsError) as refused:
        settings(canary, candidate_weight=weight)
    assert message in str(refused.value) and "\n" not in str(refused.value)
