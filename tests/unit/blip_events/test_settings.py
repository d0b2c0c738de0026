"""blip_events.settings: a camera's patch over the defaults, key by key; the config's event sections, strict."""

from __future__ import annotations

import pytest

from blip_api.settings import ApiSettings, SettingsError
from blip_events.settings import CameraPatch, EventDefaults, EventsPatch, GatePatch, MqttSection, ThresholdsPatch

DEFAULTS = EventDefaults(thresholds={"barking": 0.5, "eating": 0.6}, questions={"barking": "b?", "eating": "e?"})


def test_an_empty_patch_watches_every_behaviour_at_its_default_thresholds() -> None:
    settings = DEFAULTS.resolve(CameraPatch())
    assert {name: (t.enter, t.exit) for name, t in settings.behaviors.items()} == {
        "barking": (0.5, 0.35),
        "eating": (0.6, 0.45),
    }
    assert settings.gate == DEFAULTS.gate and settings.events == DEFAULTS.events and settings.webhook_url is None


def test_a_later_patch_replaces_only_the_keys_it_names() -> None:
    first = CameraPatch(behaviors={"barking": ThresholdsPatch(enter=0.7)}, gate=GatePatch(max_age_s=5))
    later = first.merged(CameraPatch(behaviors={"barking": ThresholdsPatch(exit=0.2)}, events=EventsPatch(cutoff_s=9)))
    settings = DEFAULTS.resolve(later)
    assert list(settings.behaviors) == ["barking"] and (
        settings.behaviors["barking"].enter,
        settings.behaviors["barking"].exit,
    ) == (0.7, 0.2)
    assert settings.gate.max_age_s == 5 and settings.events.cutoff_s == 9 and settings.gate.budget_per_minute == 60


def test_mqtt_is_on_for_every_camera_where_a_broker_is_configured_unless_the_camera_turns_it_off() -> None:
    assert not DEFAULTS.resolve(CameraPatch()).mqtt, "no [mqtt] url: no camera publishes"
    assert not DEFAULTS.resolve(CameraPatch(mqtt=True)).mqtt, "asked for, with no broker (PUT refuses it): off"
    brokered = DEFAULTS.model_copy(update={"mqtt": MqttSection(url="mqtt://broker")})
    assert brokered.resolve(CameraPatch()).mqtt and brokered.resolve(CameraPatch(mqtt=True)).mqtt
    off = CameraPatch(mqtt=False)
    assert not brokered.resolve(off).mqtt
    assert not brokered.resolve(off.merged(CameraPatch(gate=GatePatch(max_age_s=5)))).mqtt, "a later PUT keeps it"
    assert brokered.resolve(off.merged(CameraPatch(mqtt=True))).mqtt
    with pytest.raises(ValueError, match="valid boolean"):
        CameraPatch.model_validate({"mqtt": "sometimes"})


def test_a_patch_refuses_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="max_agee"):
        CameraPatch.model_validate({"gate": {"max_agee": 5}})
    with pytest.raises(ValueError, match="greater than 0"):
        CameraPatch.model_validate({"gate": {"max_age_s": 0}})
    with pytest.raises(ValueError, match="valid number"):
        CameraPatch.model_validate({"behaviors": {"barking": {"enter": True}}})


def test_the_config_sections_are_strict_and_reach_the_defaults() -> None:
    base = {"backends": {"a": {"url": "127.0.0.1:1"}}}
    settings = ApiSettings.from_dict(
        base | {"gate": {"max_age_s": 4}, "webhooks": {"allow_insecure": True}, "alerts": {"threshold": 0.7}},
        env={},
        insecure_dev=True,
    )
    assert settings.events.gate.max_age_s == 4 and settings.events.webhooks.allow_insecure
    assert set(settings.events.thresholds.values()) == {0.7}, "a behaviour's default enter is the alert threshold"
    with pytest.raises(SettingsError, match=r"gate\.max_age is not a setting \(did you mean gate\.max_age_s\?\)"):
        ApiSettings.from_dict(base | {"gate": {"max_age": 4}}, env={}, insecure_dev=True)
    with pytest.raises(SettingsError, match=r"webhooks\.allow_insecure: Input should be a valid boolean"):
        ApiSettings.from_dict(base | {"webhooks": {"allow_insecure": "maybe"}}, env={}, insecure_dev=True)
