"""blip_api.settings: client/api.toml is one record, validated whole; a misspelt key is refused, never ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from blip_api.settings import ApiSettings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
BASE = {"backends": {"a": {"url": "127.0.0.1:1"}}}


def settings(data: dict) -> ApiSettings:
    return ApiSettings.from_dict(data, env={}, insecure_dev=True)


def test_the_committed_configs_load() -> None:
    for path in (ROOT / "client/api.toml", ROOT / "deploy/kubernetes/overlays/api/api.toml"):
        loaded = ApiSettings.load(path, env={}, insecure_dev=True)
        assert loaded.router.backends and loaded.behaviors, path


def test_the_alert_threshold_is_a_probability() -> None:
    assert settings(BASE).alert_threshold == 0.5
    assert settings(BASE | {"alerts": {"threshold": 0.8}}).alert_threshold == 0.8
    for bad in (1.5, 0, 1, True, "0.5"):
        with pytest.raises(SettingsError, match=r"^config: alerts\.threshold: Input should be .*, got "):
            settings(BASE | {"alerts": {"threshold": bad}})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[alerts]\nthreshhold = 0.9\n", "alerts.threshhold is not a setting (did you mean alerts.threshold?)"),
        ('[behaviours]\nbarking = "Is it?"\n', "behaviours is not a setting (did you mean behaviors?)"),
        ("[routr]\nmax_attempts = 2\n", "routr is not a setting (did you mean router?)"),
        ("[router]\nmax_attempt = 2\n", "router.max_attempt is not a setting (did you mean router.max_attempts?)"),
        ("[api]\nmax_image_byte = 2\n", "api.max_image_byte is not a setting (did you mean api.max_image_bytes?)"),
        (
            '[backends.b]\nurl = "x:1"\nwieght = 2\n',
            "backends.b.wieght is not a setting (did you mean backends.b.weight?)",
        ),
    ],
)
def test_an_unknown_key_is_refused_with_the_file_its_path_and_the_nearest_name(tmp_path, text, message) -> None:
    path = tmp_path / "api.toml"
    path.write_text('[backends.a]\nurl = "127.0.0.1:1"\n' + text)
    with pytest.raises(SettingsError) as raised:
        ApiSettings.load(path, env={}, insecure_dev=True)
    assert str(raised.value) == f"{path}: {message}"


def test_behaviors_are_names_and_questions() -> None:
    assert settings(BASE | {"behaviors": {"zoomies": "Is the dog running?"}}).behaviors == {
        "zoomies": "Is the dog running?"
    }
    with pytest.raises(SettingsError, match=r"behaviors\.zoomies: String should match pattern"):
        settings(BASE | {"behaviors": {"zoomies": "   "}})
    with pytest.raises(SettingsError, match=r"behaviors\.zoomies: Input should be a valid string, got 3$"):
        settings(BASE | {"behaviors": {"zoomies": 3}})


def test_limits_are_positive_integers() -> None:
    assert settings(BASE | {"api": {"max_questions": 1}}).limits.max_questions == 1  # the boundary: 1 is allowed
    for bad in (0, -1, 2.5, True):
        with pytest.raises(SettingsError, match=r"^config: api\.max_questions: Input should be"):
            settings(BASE | {"api": {"max_questions": bad}})


def test_admin_reload_refuses_an_unknown_key_and_keeps_the_running_config(tmp_path, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from blip_api.app import create_app
    from blip_serving.triton.process import free_port

    path = tmp_path / "api.toml"
    good = f'[alerts]\nthreshold = 0.7\n[backends.a]\nurl = "127.0.0.1:{free_port()}"\n'
    path.write_text(good)
    monkeypatch.setenv("BLIP_API_TOKEN", "t")  # a reload reads the tokens from the environment again
    monkeypatch.setenv("BLIP_API_ADMIN_TOKEN", "admin")
    monkeypatch.setenv("BLIP_DB_URL", f"sqlite:///{tmp_path / 'events.sqlite3'}")
    app = create_app(ApiSettings.load(path))
    admin = {"Authorization": "Bearer admin"}
    with TestClient(app) as client:
        path.write_text(good.replace("threshold", "threshhold").replace("0.7", "0.9"))
        response = client.post("/admin/reload", headers=admin)
        assert response.status_code == 400
        assert response.json()["error"] == (
            f"config not reloaded, the running one stays: {path}: alerts.threshhold is not a setting "
            "(did you mean alerts.threshold?)"
        )
        assert app.state.blip.settings.alert_threshold == 0.7, "the running config stays"
        path.write_text(good.replace("0.7", "0.6"))
        assert client.post("/admin/reload", headers=admin).status_code == 200
        assert app.state.blip.settings.alert_threshold == 0.6
