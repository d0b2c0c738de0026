"""The router's own logic on a running event loop: weighted shares, live weights, reloads, config errors.

Backends here point at ports where nothing listens, so no call is made; what is tested is the choice itself.
Calls, probes, breakers and failover against real Triton servers are in tests/integration.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from blip_client.router import BackendConfig, Router, RouterConfig, RouterConfigError
from blip_serving.deploy.server import free_port


def config(**weights: float) -> RouterConfig:
    return RouterConfig(backends=tuple(BackendConfig(n, f"127.0.0.1:{free_port()}", w) for n, w in weights.items()))


def shares(router: Router, picks: int) -> Counter:
    return Counter(router.choose().name for _ in range(picks))


def run(coroutine_function):
    async def body():
        router = Router(config(neuron=1, gpu=1))
        router.apply_config(router.config)  # connects without starting the probes
        try:
            return await coroutine_function(router)
        finally:
            await router.close()

    return asyncio.run(body())


def test_weighted_round_robin_gives_exact_shares_without_bursts() -> None:
    async def check(router: Router):
        router.set_weight("gpu", 3)
        sequence = [router.choose().name for _ in range(8)]
        assert Counter(sequence) == {"gpu": 6, "neuron": 2}
        assert "gpu" in sequence[:2] and "neuron" in sequence[:4], "smooth: no run of one backend's whole share"
        router.set_weight("gpu", 0)
        assert shares(router, 10) == {"neuron": 10}, "weight 0 drains"
        router.backends["neuron"].healthy = False
        assert shares(router, 4) == {"neuron": 4}, "unhealthy backends are still tried when nothing else is left"
        router.set_weight("gpu", 1)
        assert shares(router, 4) == {"gpu": 4}, "healthy ones first"
        assert router.choose(exclude=[router.backends["gpu"]]).name == "neuron"

    run(check)


def test_a_reload_adds_removes_and_reweights_without_a_restart() -> None:
    async def check(router: Router):
        kept_url = router.backends["neuron"].config.url
        new = RouterConfig(
            backends=(BackendConfig("neuron", kept_url, 2), BackendConfig("cpu", f"127.0.0.1:{free_port()}", 1))
        )
        removed = router.backends["gpu"]
        removed.in_flight = 1  # a request still on its way back
        removed.idle.clear()
        assert router.apply_config(new) == {"added": ["cpu"], "removed": ["gpu"], "reweighted": ["neuron"]}
        assert shares(router, 6) == {"neuron": 4, "cpu": 2}
        await asyncio.sleep(0.05)
        assert removed.retired and not removed.client.closed, "kept open while in flight"
        removed.in_flight = 0
        removed.idle.set()
        await asyncio.sleep(0.05)
        assert removed.client.closed, "closed once idle"

    run(check)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"backends": {}}, "at least one backend"),
        ({"backends": {"a": {"url": "http://x:1"}}}, "without a scheme"),
        ({"backends": {"a": {"url": "x:1", "weight": -1}}}, "weight must be a number >= 0"),
        ({"backends": {"a": {"host": "x"}}}, "needs url"),
        ({"router": {"probe_interval_s": 0}, "backends": {"a": {"url": "x:1"}}}, "probe_interval_s must be a positive"),
        ({"router": {"probes": 1}, "backends": {"a": {"url": "x:1"}}}, "unknown router settings"),
    ],
)
def test_bad_router_configs_are_refused_with_the_setting_named(data, message) -> None:
    with pytest.raises(RouterConfigError, match=message):
        RouterConfig.from_dict(data)


def test_the_alert_threshold_is_a_probability() -> None:
    from blip_api.settings import ApiSettings, SettingsError

    base = {"backends": {"a": {"url": "127.0.0.1:1"}}}
    assert ApiSettings.from_dict(base, env={}, insecure_dev=True).alert_threshold == 0.5
    assert (
        ApiSettings.from_dict(base | {"alerts": {"threshold": 0.8}}, env={}, insecure_dev=True).alert_threshold == 0.8
    )
    with pytest.raises(SettingsError, match=r"alerts\.threshold must be a probability between 0 and 1, got 1\.5"):
        ApiSettings.from_dict(base | {"alerts": {"threshold": 1.5}}, env={}, insecure_dev=True)
