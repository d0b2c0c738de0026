"""The router's own logic on a running event loop: choice, failover, the 400 rule, breakers, health, reloads.

Each fleet's client is a stand-in (``Fleet``) that answers or raises the typed error a test gives it, so the real
``ask``, ``_call`` and ``probe`` run with their breakers, retries and metrics. The same paths against real Triton
servers are in tests/integration (test_fleets_failover.py, test_api.py).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import pybreaker
import pytest

from blip_client.errors import (
    BlipVqaError,
    InvalidRequestError,
    NoBackendAvailableError,
    ServerError,
    ServerTimeoutError,
    ServerUnavailableError,
)
from blip_client.router import Router
from blip_client.router_config import BackendConfig, RouterConfig, RouterConfigError
from blip_client.wire import PROBE_PIXELS, PROBE_QUESTIONS, VqaResult
from blip_contract.logs import REQUEST_ID
from blip_contract.pixels import PixelSettings

IMAGE = b"\xff\xd8 a frame"


PIXEL_SETTINGS = PixelSettings(height=8, width=8, max_image_bytes=2**20, max_image_pixels=10**6)


@dataclass
class Fleet:
    """A fleet's client: records every call, then answers, or raises ``error`` when one is set."""

    url: str
    error: BlipVqaError | None = None
    calls: list[tuple[bytes, tuple[str | bytes, ...], bool, float]] = field(default_factory=list)
    closed: bool = False
    delay_s: float = 0.0
    request_ids: list[str | None] = field(default_factory=list)

    async def read_pixel_settings(self, timeout_s: float) -> PixelSettings:
        return PIXEL_SETTINGS

    async def infer(
        self,
        image: bytes,
        questions: Sequence[str | bytes],
        *,
        timeout_s: float,
        scores_only: bool = False,
        request_id: str | None = None,
    ) -> VqaResult:
        self.calls.append((image, tuple(questions), scores_only, timeout_s))
        self.request_ids.append(request_id)
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return VqaResult([0.75] * len(questions), None if scores_only else [f"{self.url} says yes"] * len(questions))

    async def close(self) -> None:
        self.closed = True


def config(*, backends: Sequence[tuple[str, float]] = (("neuron", 1), ("gpu", 1)), **settings) -> RouterConfig:
    return RouterConfig(backends=tuple(BackendConfig(n, f"{n}.fleet:8000", w) for n, w in backends), **settings)


def run(check, router_config: RouterConfig | None = None):
    """Run ``check(router)`` on a router whose backends are connected (stand-ins) but not yet probing."""

    async def body():
        router = Router(router_config or config(), connect=Fleet)
        router.connect_all()  # what start() does before its first probes and probe loops
        try:
            return await check(router)
        finally:
            await router.close()

    return asyncio.run(body())


def fleet(router: Router, name: str) -> Fleet:
    client = router.backends[name].client
    assert isinstance(client, Fleet)
    return client


def sample(router: Router, metric: str, **labels: str) -> float:
    value = router.metrics.registry.get_sample_value(metric, labels)
    return 0.0 if value is None else value


def picks(router: Router, count: int) -> list[str]:
    return [router.choose().name for _ in range(count)]


# ---- choice: smooth weighted round robin --------------------------------------------------------------------------


def assert_smooth(sequence: list[str], weights: dict[str, float]) -> None:
    """Exact shares over every full cycle, and at every prefix each fleet within one pick of its share."""
    total = sum(weights.values())
    cycle = int(total)
    for start in range(0, len(sequence) - cycle + 1, cycle):
        assert Counter(sequence[start : start + cycle]) == {n: w for n, w in weights.items() if w}, start
    seen: Counter[str] = Counter()
    for length, name in enumerate(sequence, start=1):
        seen[name] += 1
        for other, weight in weights.items():
            assert abs(seen[other] - length * weight / total) < 1, (length, other, sequence[:length])


@pytest.mark.parametrize(
    "weights",
    [{"a": 2, "b": 3, "c": 5}, {"a": 1, "b": 1, "c": 1, "d": 7}, {"a": 5, "b": 1, "c": 1}, {"a": 3, "b": 4, "c": 0}],
    ids=str,
)
def test_weighted_round_robin_gives_exact_shares_without_bursts(weights) -> None:
    async def check(router: Router):
        assert_smooth(picks(router, 100), weights)

    run(check, config(backends=tuple(weights.items())))


def test_the_nginx_sequence_for_weights_5_1_1() -> None:
    """nginx's own example: a a b a c a a, never five in a row."""

    async def check(router: Router):
        assert picks(router, 7) == ["a", "a", "b", "a", "c", "a", "a"]

    run(check, config(backends=(("a", 5), ("b", 1), ("c", 1))))


def test_shares_follow_set_weight_and_a_reload_at_once() -> None:
    async def check(router: Router):
        picks(router, 3)  # part-way through a cycle
        router.set_weight("b", 6)
        assert_smooth(picks(router, 90), {"a": 2, "b": 6, "c": 1})
        urls = {name: backend.config.url for name, backend in router.backends.items()}
        reloaded = RouterConfig(
            backends=(
                BackendConfig("a", urls["a"], 1),
                BackendConfig("b", urls["b"], 3),
                BackendConfig("c", urls["c"], 4),
                BackendConfig("d", "d.fleet:8000", 2),
            )
        )
        picks(router, 5)
        assert router.apply_config(reloaded) == {"added": ["d"], "removed": [], "reweighted": ["a", "b", "c"]}
        assert_smooth(picks(router, 100), {"a": 1, "b": 3, "c": 4, "d": 2})

    run(check, config(backends=(("a", 2), ("b", 3), ("c", 1))))


def test_drained_unhealthy_and_excluded_backends() -> None:
    async def check(router: Router):
        router.set_weight("gpu", 0)
        assert Counter(picks(router, 10)) == {"neuron": 10}, "weight 0 drains"
        router.backends["neuron"].healthy = False
        assert Counter(picks(router, 4)) == {"neuron": 4}, (
            "unhealthy backends are still tried when nothing else is left"
        )
        router.set_weight("gpu", 1)
        assert Counter(picks(router, 4)) == {"gpu": 4}, "healthy ones first"
        assert router.choose(exclude=[router.backends["gpu"]]).name == "neuron"
        router.set_weight("neuron", 0)
        assert router.choose(exclude=[router.backends["gpu"]]) is None

    run(check)


def test_set_weight_refuses_unknown_backends_and_bad_weights() -> None:
    async def check(router: Router):
        with pytest.raises(KeyError, match=r"no backend named 'tpu'; known: \['gpu', 'neuron'\]"):
            router.set_weight("tpu", 1)
        for bad in (-1, "2", None, True):
            with pytest.raises(RouterConfigError, match=rf"^weight: Input should be .*, got {re.escape(repr(bad))}$"):
                router.set_weight("gpu", bad)
        assert router.backends["gpu"].weight == 1.0
        router.set_weight("gpu", 0)
        assert router.backends["gpu"].weight == 0.0 and sample(router, "blip_router_weight", backend="gpu") == 0

    run(check)


def test_a_reload_adds_removes_and_reweights_without_a_restart() -> None:
    async def check(router: Router):
        kept = router.backends["neuron"]
        new = RouterConfig(backends=(BackendConfig("neuron", kept.config.url, 2), BackendConfig("cpu", "cpu:1", 1)))
        removed = router.backends["gpu"]
        removed.in_flight = 1  # a request still on its way back
        removed.idle.clear()
        assert router.apply_config(new) == {"added": ["cpu"], "removed": ["gpu"], "reweighted": ["neuron"]}
        assert router.backends["neuron"] is kept, "a kept backend keeps its client and health"
        assert Counter(picks(router, 6)) == {"neuron": 4, "cpu": 2}
        await asyncio.sleep(0.05)
        assert removed.retired and not removed.client.closed, "kept open while in flight"
        removed.in_flight = 0
        removed.idle.set()
        await asyncio.sleep(0.05)
        assert removed.client.closed, "closed once idle"
        moved = RouterConfig(backends=(BackendConfig("neuron", "elsewhere:8000", 2), BackendConfig("cpu", "cpu:1", 1)))
        assert router.apply_config(moved) == {"added": ["neuron"], "removed": ["neuron"], "reweighted": []}
        assert router.backends["neuron"] is not kept and fleet(router, "neuron").url == "elsewhere:8000"

    run(check)


def test_a_reload_takes_the_new_breaker_settings() -> None:
    async def check(router: Router):
        router.apply_config(config(breaker_fail_max=7, breaker_reset_s=42))
        breaker = router.backends["gpu"].breaker
        assert (breaker.fail_max, breaker.reset_timeout) == (7, 42)

    run(check)


# ---- calls: failover, the 400 rule, max attempts, breakers -------------------------------------------------------


def test_a_callers_400_propagates_at_once_and_counts_against_no_backend() -> None:
    async def check(router: Router):
        fleet(router, "neuron").error = fleet(router, "gpu").error = InvalidRequestError("IMAGE is empty")
        first = router.choose()  # the one ask will pick next
        router._reset_rotation()
        with pytest.raises(InvalidRequestError, match="IMAGE is empty"):
            await router.ask(IMAGE, ["Is the dog barking?"])
        other = next(b for b in router.backends.values() if b is not first)
        assert len(fleet(router, first.name).calls) == 1 and fleet(router, other.name).calls == [], "never retried"
        assert first.breaker.fail_counter == 0 and first.breaker.current_state == pybreaker.STATE_CLOSED
        assert not first.probe_now.is_set(), "a caller's mistake asks for no probe"
        assert sample(router, "blip_router_failovers_total", backend=first.name) == 0
        assert sample(router, "blip_router_unanswered_total") == 0
        assert sample(router, "blip_router_errors_total", backend=first.name, kind="invalid_request") == 1
        assert sample(router, "blip_router_errors_total", backend=first.name, kind="server_error") == 0
        assert first.in_flight == 0 and first.idle.is_set()

    run(check)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ServerError("[500] Stub process 'text_decoder_0_0' is not healthy."), "server_error"),
        (ServerUnavailableError("connection refused"), "unavailable"),
        (ServerTimeoutError("no answer within 30s"), "timeout"),
        (BlipVqaError("expected 1 scores, got 0"), "server_error"),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_a_server_failure_fails_over_to_the_next_fleet(error, kind) -> None:
    async def check(router: Router):
        fleet(router, "neuron").error = error
        answer = await router.ask(IMAGE, ["Is the dog barking?", "Is the dog eating?"])
        assert (answer.backend, answer.attempts) == ("gpu", 2) and 0 < answer.seconds < 5
        assert fleet(router, "gpu").calls[0][:2] == (IMAGE, ("Is the dog barking?", "Is the dog eating?"))
        assert answer.answers == ["gpu.fleet:8000 says yes"] * 2 and answer.scores == [0.75, 0.75]
        neuron = router.backends["neuron"]
        assert len(fleet(router, "neuron").calls) == 1 and len(fleet(router, "gpu").calls) == 1
        assert neuron.breaker.fail_counter == 1 and router.backends["gpu"].breaker.fail_counter == 0
        assert neuron.probe_now.is_set(), "a failed call asks for a probe at once"
        assert sample(router, "blip_router_failovers_total", backend="neuron") == 1
        assert sample(router, "blip_router_errors_total", backend="neuron", kind=kind) == 1
        assert sample(router, "blip_router_requests_total", backend="gpu") == 1
        assert sample(router, "blip_router_unanswered_total") == 0
        assert neuron.in_flight == 0 and neuron.idle.is_set()

    run(check)


def test_after_max_attempts_the_caller_gets_the_no_fleet_error() -> None:
    async def check(router: Router):
        for name in router.backends:
            fleet(router, name).error = ServerError(f"[500] {name} broke")
        with pytest.raises(NoBackendAvailableError, match=r"no backend could answer \(3 tried\)") as raised:
            await router.ask(IMAGE, ["q?"])
        called = [name for name in router.backends if fleet(router, name).calls]
        assert len(called) == 3 and all(len(fleet(router, n).calls) == 1 for n in called), "each fleet once at most"
        reasons = str(raised.value).partition(": ")[2]
        assert reasons.split("; ") == [f"{n}: server_error: [500] {n} broke" for n in called], "in the order tried"
        assert sample(router, "blip_router_unanswered_total") == 1

    run(check, config(backends=(("a", 1), ("b", 1), ("c", 1), ("d", 1)), max_attempts=3))


def test_with_every_fleet_drained_nothing_is_called() -> None:
    async def check(router: Router):
        for name in router.backends:
            router.set_weight(name, 0)
        with pytest.raises(NoBackendAvailableError, match=r"\(0 tried\): every backend is down, drained"):
            await router.ask(IMAGE, ["q?"])
        assert fleet(router, "neuron").calls == fleet(router, "gpu").calls == []

    run(check)


def test_the_breaker_opens_after_fail_max_and_a_passing_probe_closes_it() -> None:
    async def check(router: Router):
        only = router.backends["neuron"]
        fleet(router, "neuron").error = ServerError("[500] broke")
        for _ in range(2):
            with pytest.raises(NoBackendAvailableError):
                await router.ask(IMAGE, ["q?"])
        assert only.breaker.current_state == pybreaker.STATE_CLOSED, "one failure short of fail_max"
        with pytest.raises(NoBackendAvailableError):
            await router.ask(IMAGE, ["q?"])
        assert only.breaker.current_state == pybreaker.STATE_OPEN and not only.takes_traffic()
        assert sample(router, "blip_router_breaker_state", backend="neuron") == 2
        assert sample(router, "blip_router_errors_total", backend="neuron", kind="server_error") == 3, "the trip too"
        with pytest.raises(NoBackendAvailableError, match=r"\(0 tried\)"):
            await router.ask(IMAGE, ["q?"])
        assert len(fleet(router, "neuron").calls) == 3, "an open breaker sends nothing"
        assert sample(router, "blip_router_errors_total", backend="neuron", kind="breaker_open") == 0
        fleet(router, "neuron").error = None
        await only.probe()
        assert only.breaker.current_state == pybreaker.STATE_CLOSED and only.takes_traffic()
        assert (await router.ask(IMAGE, ["q?"])).backend == "neuron"

    run(check, config(backends=(("neuron", 1),), breaker_fail_max=3, breaker_reset_s=60))


def test_an_open_breaker_admits_its_trial_call_after_the_reset_time() -> None:
    async def check(router: Router):
        only = router.backends["neuron"]
        fleet(router, "neuron").error = ServerError("[500] broke")
        with pytest.raises(NoBackendAvailableError):
            await router.ask(IMAGE, ["q?"])
        assert only.breaker.current_state == pybreaker.STATE_OPEN and not only.breaker_admits()
        await asyncio.sleep(0.25)
        assert only.breaker_admits(), "reset time passed: the next call is the trial"
        fleet(router, "neuron").error = None
        assert (await router.ask(IMAGE, ["q?"])).backend == "neuron"
        assert only.breaker.current_state == pybreaker.STATE_CLOSED

    run(check, config(backends=(("neuron", 1),), breaker_fail_max=1, breaker_reset_s=0.2))


def test_calls_in_flight_and_latency_are_counted_per_backend() -> None:
    async def check(router: Router):
        neuron = router.backends["neuron"]
        fleet(router, "neuron").delay_s = 0.1
        calls = [asyncio.create_task(router.ask(IMAGE, ["q?"])) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert neuron.in_flight == 2 and not neuron.idle.is_set()
        assert sample(router, "blip_router_in_flight", backend="neuron") == 2
        await asyncio.gather(*calls)
        assert neuron.in_flight == 0 and neuron.idle.is_set()
        assert sample(router, "blip_router_in_flight", backend="neuron") == 0
        assert sample(router, "blip_router_request_seconds_count", backend="neuron") == 2
        assert 0.2 <= sample(router, "blip_router_request_seconds_sum", backend="neuron") < 2

    run(check, config(backends=(("neuron", 1),)))


def test_a_backend_removed_while_its_call_is_in_flight_answers_and_leaves_no_series_behind() -> None:
    async def check(router: Router):
        fleet(router, "gpu").delay_s = 0.1
        router.set_weight("neuron", 0)
        call = asyncio.create_task(router.ask(IMAGE, ["q?"]))
        await asyncio.sleep(0.05)
        url = router.backends["neuron"].config.url
        router.apply_config(RouterConfig(backends=(BackendConfig("neuron", url, 1),)))
        assert (await call).backend == "gpu", "the request in flight still gets its answer"
        for metric in ("blip_router_in_flight", "blip_router_requests_total", "blip_router_request_seconds_count"):
            assert router.metrics.registry.get_sample_value(metric, {"backend": "gpu"}) is None, metric

    run(check)


def test_scores_only_reaches_the_fleet_only_when_asked() -> None:
    async def check(router: Router):
        full = await router.ask(IMAGE, ["a?", "b?"])
        scores = await router.ask(IMAGE, ["a?", "b?"], scores_only=True)
        assert full.answers is not None and scores.answers is None and scores.scores == [0.75, 0.75]
        calls = fleet(router, "neuron").calls + fleet(router, "gpu").calls
        assert sorted(flag for _, _, flag, _ in calls) == [False, True]
        assert {timeout for *_, timeout in calls} == {12.5}, "the configured request timeout is passed on"

    run(check, config(request_timeout_s=12.5))


# ---- active probes: health transitions ---------------------------------------------------------------------------


def test_health_changes_after_exactly_the_configured_probe_counts() -> None:
    async def check(router: Router):
        backend, client = router.backends["gpu"], fleet(router, "gpu")
        client.error = ServerError("[500] Stub process 'text_decoder_0_0' is not healthy.")
        history = []
        for _ in range(3):
            await backend.probe()
            history.append(backend.healthy)
        assert history == [True, True, False], "unhealthy after exactly 3 failed probes"
        assert "not healthy" in backend.last_probe.error and not backend.last_probe.ok
        client.error = None
        await backend.probe()
        client.error = ServerUnavailableError("refused")
        await backend.probe()  # a failure in between starts the count again
        client.error = None
        history = []
        for _ in range(2):
            await backend.probe()
            history.append(backend.healthy)
        assert history == [False, True], "healthy again after exactly 2 passed probes in a row"
        assert 0 <= backend.last_probe.seconds < 1
        assert client.calls[-1][:2] == (PROBE_PIXELS, PROBE_QUESTIONS) and client.calls[-1][3] == 0.5
        assert sample(router, "blip_router_probes_total", backend="gpu", result="failed") == 4
        assert sample(router, "blip_router_probes_total", backend="gpu", result="ok") == 3
        assert sample(router, "blip_router_healthy", backend="gpu") == 1

    run(check, config(unhealthy_after=3, healthy_after=2, probe_timeout_s=0.5))


def test_a_probe_is_one_scores_only_question_and_a_refusal_of_it_keeps_the_fleet_healthy() -> None:
    """The one probe rule (blip_client.probe), as the supervisor and blip-client probe apply it: a 400 to the
    known-good probe means the fleet answered (stricter limits, say); it never takes the fleet out of rotation."""

    async def check(router: Router):
        backend, client = router.backends["gpu"], fleet(router, "gpu")
        client.error = InvalidRequestError("[400] the image is larger than this fleet accepts")
        for _ in range(3):
            result = await backend.probe()
        assert backend.healthy and result.ok and result.note.startswith("the probe itself was refused")
        assert client.calls[-1][2] is True, "scores only: one decoder step"
        assert sample(router, "blip_router_probes_total", backend="gpu", result="ok") == 3

    run(check, config(unhealthy_after=1))


def test_a_passed_probe_clears_the_failed_count() -> None:
    async def check(router: Router):
        backend, client = router.backends["gpu"], fleet(router, "gpu")
        for error in (ServerError("[500] broke"), None, ServerError("[500] broke")):
            client.error = error
            await backend.probe()
        assert backend.healthy and backend.bad_probes == 1, "fail, pass, fail: never two failures in a row"
        client.error = ServerError("[500] broke")
        await backend.probe()
        assert not backend.healthy and sample(router, "blip_router_healthy", backend="gpu") == 0
        assert 0 <= backend.last_probe.seconds < 1

    run(check, config(unhealthy_after=2, healthy_after=1))


def test_a_probe_on_an_unhealthy_backend_does_not_close_its_breaker_early() -> None:
    async def check(router: Router):
        backend, client = router.backends["gpu"], fleet(router, "gpu")
        client.error = ServerError("[500] broke")
        await backend.probe()
        backend.breaker.open()
        client.error = None
        await backend.probe()
        assert not backend.healthy and backend.breaker.current_state == pybreaker.STATE_OPEN
        await backend.probe()
        assert backend.healthy and backend.breaker.current_state == pybreaker.STATE_CLOSED

    run(check, config(unhealthy_after=1, healthy_after=2))


def test_the_probe_loop_probes_on_its_interval_and_at_once_after_a_failed_call() -> None:
    async def body():
        router = Router(config(probe_interval_s=60, breaker_fail_max=4, breaker_reset_s=7), connect=Fleet)
        await router.start()
        try:
            assert {(b.breaker.fail_max, b.breaker.reset_timeout) for b in router.backends.values()} == {(4, 7)}
            gpu = fleet(router, "gpu")
            assert len(gpu.calls) == 1, "start probes every backend once"
            await asyncio.sleep(0.05)
            assert len(gpu.calls) == 1, "then waits for its interval"
            gpu.error = ServerError("[500] broke")
            router.backends["neuron"].weight = 0
            with pytest.raises(NoBackendAvailableError):
                await router.ask(IMAGE, ["q?"])
            for _ in range(100):
                if len(gpu.calls) >= 3:
                    break
                await asyncio.sleep(0.01)
            assert gpu.calls[2][:2] == (PROBE_PIXELS, PROBE_QUESTIONS), "the failed call brought a probe at once"
            router.apply_config(config(backends=(("neuron", 1), ("gpu", 1), ("cpu", 1)), probe_interval_s=60))
            await asyncio.sleep(0.05)
            assert router.backends["cpu"].probe_task is not None and len(fleet(router, "cpu").calls) == 1, (
                "added: probed"
            )
        finally:
            await router.close()
        assert gpu.closed and all(b.probe_task is None for b in router.backends.values())
        router.apply_config(config(backends=(("tpu", 1),)))
        assert router.backends["tpu"].probe_task is None, "a closed router starts no probing"
        await router.close()

    asyncio.run(body())


# ---- configuration --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"backends": {}}, "at least one backend is needed$"),
        ({}, "at least one backend is needed$"),
        (
            {"router": {"backends": 1}, "backends": {"a": {"url": "x:1"}}},
            r"router\.backends is not a setting \(known here: breaker_fail_max, ",
        ),
        ({"backends": {"a": {"url": "http://x:1"}}}, "backends.a.url: String should match pattern"),
        ({"backends": {"a": {"url": ""}}}, "backends.a.url: String should match pattern .*, got ''$"),
        (
            {"backends": {"a": {"url": "x:1", "weight": -1}}},
            "backends.a.weight: Input should be greater than or equal to 0, got -1$",
        ),
        ({"backends": {"a": {"url": "x:1", "weight": "2"}}}, "backends.a.weight: Input should be a valid number"),
        ({"backends": {"a": {"url": "x:1", "weight": True}}}, "backends.a.weight: Input should be a valid number"),
        ({"backends": {"a b": {"url": "x:1"}}}, r"backends\.a b\.\[key\]: String should match pattern .*, got 'a b'$"),
        ({"backends": {"": {"url": "x:1"}}}, r"backends\.\.\[key\]: String should match pattern"),
        ({"backends": {"a": {"host": "x"}}}, r"backends\.a\.url: Field required$"),
        (
            {"backends": {"a": {"url": "x:1", "port": 2}}},
            r"backends\.a\.port is not a setting \(known here: url, weight\)$",
        ),
        (
            {"router": {"probe_interval_s": 0}, "backends": {"a": {"url": "x:1"}}},
            "router.probe_interval_s: Input should be greater than 0, got 0$",
        ),
        (
            {"router": {"max_attempts": -1}, "backends": {"a": {"url": "x:1"}}},
            "router.max_attempts: Input should be greater than 0",
        ),
        (
            {"router": {"healthy_after": "2"}, "backends": {"a": {"url": "x:1"}}},
            "router.healthy_after: Input should be a valid integer, got '2'$",
        ),
        (
            {"router": {"max_attempts": True}, "backends": {"a": {"url": "x:1"}}},
            "router.max_attempts: Input should be a valid integer, got True$",
        ),
        ({"router": {"breaker_reset_s": 0.5}, "backends": {"a": {"url": "x:1"}}}, None),
        (
            {"router": {"probes": 1}, "backends": {"a": {"url": "x:1"}}},
            r"router\.probes is not a setting \(did you mean router\.probe_timeout_s\?\)$",
        ),
        (
            {"routr": {"max_attempts": 2}, "backends": {"a": {"url": "x:1"}}},
            r"routr is not a setting \(did you mean router\?\)$",
        ),
    ],
)
def test_bad_router_configs_are_refused_with_the_setting_named(data, message) -> None:
    if message is None:  # the boundary: a fraction of a second is a positive number
        assert RouterConfig.from_dict(data).breaker_reset_s == 0.5
        return
    with pytest.raises(RouterConfigError, match=f"^{message}"):
        RouterConfig.from_dict(data)


def test_a_good_router_config_reads_every_setting() -> None:
    data = {
        "router": {"probe_interval_s": 0.5, "max_attempts": 2, "unhealthy_after": 3},
        "backends": {"neuron": {"url": "n:8000", "weight": 3}, "gpu-1": {"url": "g:8000"}},
    }
    parsed = RouterConfig.from_dict(data)
    assert parsed.backends == (BackendConfig("neuron", "n:8000", 3), BackendConfig("gpu-1", "g:8000", 1.0))
    assert (parsed.probe_interval_s, parsed.max_attempts, parsed.unhealthy_after) == (0.5, 2, 3)
    with pytest.raises(RouterConfigError, match=r"^backend names must be unique: \['a', 'a'\]$"):
        RouterConfig(backends=(BackendConfig("a", "x:1"), BackendConfig("a", "y:1")))


def test_status_reports_each_backend() -> None:
    async def check(router: Router):
        assert router.status()["gpu"]["last_probe"] is None, "not probed yet"
        fleet(router, "gpu").error = ServerError("[500] " + "broke " * 100)
        await router.backends["gpu"].probe()
        await router.backends["neuron"].probe()
        router.backends["gpu"].last_probe.seconds = 0.01234
        router.backends["neuron"].in_flight = 2
        router.set_weight("neuron", 3)
        status = router.status()
        assert set(status) == {"neuron", "gpu"}
        gpu, neuron = status["gpu"], status["neuron"]
        assert gpu.pop("last_probe") | {"age_s": 0} == {
            "ok": False,
            "ms": 12.3,
            "age_s": 0,
            "error": ("ServerError: [500] " + "broke " * 100)[:300].rstrip(),  # one line, as every prober reports
        }
        assert gpu == {"url": "gpu.fleet:8000", "weight": 1.0, "healthy": False, "breaker": "closed", "in_flight": 0}
        probe = neuron.pop("last_probe")
        assert set(probe) == {"ok", "ms", "age_s"} and probe["ok"] and 0 <= probe["age_s"] < 5, "no error key when ok"
        assert neuron == {
            "url": "neuron.fleet:8000",
            "weight": 3.0,
            "healthy": True,
            "breaker": "closed",
            "in_flight": 2,
        }
        router.backends["gpu"].last_probe.at -= 10.123456
        age = router.status()["gpu"]["last_probe"]["age_s"]
        assert 10 <= age < 15 and isinstance(age, float) and age == round(age, 2)

    run(check)


def test_metric_series_follow_backends_as_they_come_and_go() -> None:
    async def check(router: Router):
        assert sample(router, "blip_router_weight", backend="gpu") == 1
        urls = {name: backend.config.url for name, backend in router.backends.items()}
        router.apply_config(
            RouterConfig(backends=(BackendConfig("neuron", urls["neuron"], 4), BackendConfig("cpu", "cpu:1", 2)))
        )
        assert sample(router, "blip_router_weight", backend="neuron") == 4
        assert sample(router, "blip_router_weight", backend="cpu") == 2
        assert router.metrics.registry.get_sample_value("blip_router_weight", {"backend": "gpu"}) is None, "gone"
        assert router.metrics.registry.get_sample_value("blip_router_healthy", {"backend": "cpu"}) == 1
        await asyncio.sleep(0.05)
        assert not router._retiring, "the retired backend's closing task is forgotten once done"

    run(check)


def test_the_request_being_handled_goes_to_the_fleet_as_its_request_id_on_every_attempt() -> None:
    async def check(router: Router) -> None:
        fleet(router, "neuron").error = ServerUnavailableError("down")
        token = REQUEST_ID.set("camera-7-frame-42")
        try:
            await router.ask(IMAGE, ["q"])
        finally:
            REQUEST_ID.reset(token)
        await router.ask(IMAGE, ["q"])  # outside any request: no id

    with_neuron_first = config(backends=(("neuron", 2), ("gpu", 1)))

    async def both(router: Router) -> tuple[list, list]:
        await check(router)
        return fleet(router, "neuron").request_ids, fleet(router, "gpu").request_ids

    neuron, gpu = run(both, with_neuron_first)
    assert neuron[0] == gpu[0] == "camera-7-frame-42", "the failed attempt and the failover carry the same id"
    assert None in neuron + gpu
