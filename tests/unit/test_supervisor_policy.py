"""The supervisor's probe and decisions, against a stand-in server: which failure gets a reload, which a restart.

The stand-in keeps what the supervisor reads of ``TritonServer`` (stub processes, reload, restart) and answers the
supervisor's real probe the way Triton 2.51 does: "Stub process '...' is not healthy." while a stub is dead, or a
failure a test sets. The real server is healed in tests/integration/test_self_healing.py and under load in
test_soak.py; here each branch is driven on purpose, including the ones a real run reaches rarely (a reload that
fails, the restart after ``reloads_per_restart`` reloads that each leave threads behind in Triton).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from blip_client.errors import (
    BlipVqaError,
    InvalidRequestError,
    ServerError,
    ServerTimeoutError,
    ServerUnavailableError,
)
from blip_client.wire import PROBE_IMAGE, PROBE_QUESTIONS
from blip_serving.errors import TritonProcessError
from blip_serving.instance_names import model_of
from blip_serving.supervisor import Supervisor


@dataclass
class Process:
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class StandIn:
    """What the supervisor uses of ``TritonServer``, with stubs that die when a test says so."""

    stubs: set[str] = field(default_factory=lambda: {"image_encoder_0_0", "text_decoder_0_0"})
    model_control_secret: str | None = "secret"
    reload_fails: bool = False
    reload_heals: bool = True
    process: Process = field(default_factory=Process)
    served: None = None  # no model version: the supervisor follows no version file here
    calls: list[str] = field(default_factory=list)
    probes: list[tuple[str, float, bytes, tuple[str | bytes, ...]]] = field(default_factory=list)
    failure: Exception | None = None  # what every probe raises, whatever the stubs
    lingering: set[str] = field(default_factory=set)  # dead stubs whose processes still show
    warmup_probes: int = 0  # probes after a reload that find the model not ready yet
    _warming: int = 0
    http_url: str = "127.0.0.1:18000"

    def __post_init__(self) -> None:
        self.ready_stubs = set(self.stubs)
        self.running = set(self.stubs)

    def kill(self, stub: str, *, lingering: bool = False) -> None:
        self.running.discard(stub)
        if lingering:
            self.lingering.add(stub)

    def stub_processes(self) -> dict[str, tuple[int, list[str]]]:
        return {name: (1, []) for name in self.running | self.lingering}

    @property
    def model_control(self) -> StandIn:
        """The stand-in answers for Triton's model control too (``ModelControl.reload``)."""
        return self

    def reload(self, model: str) -> None:
        self.calls.append(f"reload {model}")
        if self.reload_fails:
            raise TritonProcessError(f"load {model} failed")
        self._warming = self.warmup_probes
        if self.reload_heals:
            revived = {s for s in self.stubs if model_of(s) == model}
            self.running |= revived
            self.lingering -= revived

    def restart(self, grace_s: float) -> None:
        self.calls.append(f"restart grace {grace_s:g}")
        self.running, self.lingering, self.process, self.failure = set(self.stubs), set(), Process(), None

    def connect(self, url: str, timeout_s: float) -> ProbeClient:
        return ProbeClient(self, url, timeout_s)


@dataclass
class ProbeClient:
    """The probe's client, answering from the stand-in's state as Triton answers."""

    server: StandIn
    url: str
    timeout_s: float

    def __enter__(self) -> ProbeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def scores(self, image: bytes, questions: Sequence[str | bytes]) -> list[float]:
        self.server.probes.append((self.url, self.timeout_s, image, tuple(questions)))
        if self.server.failure is not None:
            raise self.server.failure
        if self.server._warming:
            self.server._warming -= 1
            raise ServerUnavailableError("blip_vqa is not ready")
        if dead := sorted(self.server.stubs - self.server.running):
            raise ServerError(f"[500] Stub process '{dead[0]}' is not healthy.")
        return [0.5] * len(questions)


def supervisor(server: StandIn, **settings) -> Supervisor:
    lines: list[str] = []
    watcher = Supervisor(server, log=lines.append, connect=server.connect, **settings)  # type: ignore[arg-type]
    watcher.lines = lines  # type: ignore[attr-defined]
    watcher._stubs = set(server.ready_stubs)
    return watcher


def recoveries(watcher: Supervisor, reason: str, action: str) -> float:
    value = watcher.registry.get_sample_value("blip_supervisor_recoveries_total", {"reason": reason, "action": action})
    return 0.0 if value is None else value


# ---- the probe's classification -----------------------------------------------------------------------------------


def test_the_probe_sends_the_known_good_frame_to_the_servers_own_url() -> None:
    server = StandIn()
    watcher = supervisor(server, probe_timeout_s=1.5)
    assert watcher.probe() is None
    assert server.probes == [("127.0.0.1:18000", 1.5, PROBE_IMAGE, PROBE_QUESTIONS)]


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (
            ServerError("[500] Stub process 'text_decoder_0_0' is not healthy."),
            "ServerError: [500] Stub process 'text_decoder_0_0' is not healthy.",
        ),
        (ServerUnavailableError("connection refused"), "ServerUnavailableError: connection refused"),
        (ServerTimeoutError("timed out"), "ServerTimeoutError: timed out"),
        (BlipVqaError("expected 1 scores, got 0\nmore detail"), "BlipVqaError: expected 1 scores, got 0"),
        (ConnectionResetError("reset by peer"), "ConnectionResetError: reset by peer"),
        (OSError(), "OSError: "),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_a_server_side_failure_fails_the_probe_with_its_first_line(failure, expected) -> None:
    server = StandIn(failure=failure)
    reason = supervisor(server).probe()
    assert reason is not None and reason.startswith(expected) and "\n" not in reason, reason
    assert reason == expected or str(failure).startswith("[500]"), "nothing added to the first line"


def test_a_refusal_of_the_probes_own_request_is_healthy_and_never_heals() -> None:
    server = StandIn(failure=InvalidRequestError("IMAGE is empty"))
    watcher = supervisor(server, failures=1)
    assert watcher.probe() is None
    for _ in range(3):
        assert watcher.check() is None
    assert server.calls == [] and watcher.recoveries == []
    assert watcher.registry.get_sample_value("blip_supervisor_probes_total", {"outcome": "ok"}) == 3
    assert any("the probe itself was refused" in line for line in watcher.lines)


# ---- decisions ------------------------------------------------------------------------------------------------------


def test_a_dead_stub_reloads_only_its_model() -> None:
    server = StandIn()
    watcher = supervisor(server)
    server.kill("text_decoder_0_0")
    recovery = watcher.check()
    assert server.calls == ["reload text_decoder"]
    assert recovery is not None and recovery.reason == "stub process(es) ['text_decoder_0_0'] exited"
    assert watcher.recoveries == [recovery] and 0 <= recovery.seconds < 5
    assert watcher.registry.get_sample_value("blip_supervisor_last_recovery_seconds") == recovery.seconds
    assert recoveries(watcher, "stub_exited", "reload") == 1 and recoveries(watcher, "stub_exited", "restart") == 0
    assert watcher.check() is None, "healed: the next round does nothing"
    assert watcher.lines == [
        "supervisor: reloading text_decoder: stub process(es) ['text_decoder_0_0'] exited",
        f"supervisor: model(s) answering again {recovery.seconds:.1f} s after the decision to reload",
    ]


def test_a_restart_is_logged_and_a_recovery_clears_the_failed_probe_count() -> None:
    server = StandIn(failure=ServerUnavailableError("refused"))
    watcher = supervisor(server, failures=2)
    watcher.check()
    watcher.check()
    assert server.calls == ["restart grace 3"]
    assert watcher.lines[-2:] == [
        "supervisor: restarting Triton: ServerUnavailableError: refused",
        f"supervisor: Triton ready again {watcher.recoveries[0].seconds:.1f} s after the decision to restart",
    ]
    server.failure = ServerUnavailableError("refused")
    watcher.check()
    assert server.calls == ["restart grace 3"], "the count started again after the recovery"
    server.failure = None
    server.kill("image_encoder_0_0")
    watcher.check()  # a reload's recovery clears the count too
    server.failure = ServerUnavailableError("refused")
    watcher.check()
    assert server.calls == ["restart grace 3", "reload image_encoder"]


def test_stubs_that_appear_after_a_restart_are_watched_too() -> None:
    server = StandIn()
    watcher = supervisor(server, failures=5)
    server.process = Process(returncode=1)
    original = server.restart

    def restart_with_more(grace_s: float) -> None:
        original(grace_s)
        server.running.add("text_encoder_0_0")  # e.g. a new instance count took effect

    server.restart = restart_with_more  # type: ignore[method-assign]
    watcher.check()
    server.running.discard("text_encoder_0_0")
    watcher.check()
    assert server.calls == ["restart grace 3", "reload text_encoder"]


def test_reloads_give_way_to_a_restart_after_the_limit() -> None:
    server = StandIn()
    watcher = supervisor(server, reloads_per_restart=3)
    for _ in range(8):
        server.kill("text_decoder_0_0")
        watcher.check()
    assert server.calls == (["reload text_decoder"] * 3 + ["restart grace 0"]) * 2
    assert recoveries(watcher, "stub_exited", "reload") == 6 and recoveries(watcher, "stub_exited", "restart") == 2
    assert all(r.reason == "stub process(es) ['text_decoder_0_0'] exited" for r in watcher.recoveries)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"reload_fails": True}, ["reload text_decoder", "restart grace 0"]),
        ({"model_control_secret": None}, ["restart grace 0"]),
    ],
    ids=["reload fails", "no model control"],
)
def test_a_reload_that_cannot_happen_or_fails_restarts_triton(change, expected) -> None:
    server = StandIn(**change)
    watcher = supervisor(server)
    server.kill("text_decoder_0_0")
    recovery = watcher.check()
    assert server.calls == expected
    assert recovery is not None and recovery.reason == "stub process(es) ['text_decoder_0_0'] exited"
    assert recoveries(watcher, "stub_exited", "restart") == 1 and recoveries(watcher, "stub_exited", "reload") == 0


def test_a_reloaded_model_that_still_fails_restarts_triton(monkeypatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr("blip_serving.supervisor.time.sleep", sleeps.append)
    server = StandIn(reload_heals=False)
    watcher = supervisor(server)
    server.kill("text_decoder_0_0")
    recovery = watcher.check()
    assert server.calls == ["reload text_decoder", "restart grace 0"]
    assert len(server.probes) == 3 and sleeps == [0.5] * 3, "three probes, half a second apart, before giving up"
    assert recovery.reason == "stub process(es) ['text_decoder_0_0'] exited"
    assert recoveries(watcher, "stub_exited", "restart") == 1


def test_a_model_answering_on_the_second_probe_after_a_reload_is_healed(monkeypatch) -> None:
    monkeypatch.setattr("blip_serving.supervisor.time.sleep", lambda seconds: None)
    server = StandIn(warmup_probes=1)  # an ensemble turns ready a moment after its component
    watcher = supervisor(server)
    server.kill("image_encoder_0_0")
    watcher.check()
    assert server.calls == ["reload image_encoder"] and len(server.probes) == 2
    assert recoveries(watcher, "stub_exited", "reload") == 1


def test_failed_probes_restart_after_exactly_the_configured_count_and_a_pass_resets_it() -> None:
    server = StandIn(failure=ServerUnavailableError("connection refused"))
    watcher = supervisor(server, failures=3)
    watcher.check()
    watcher.check()
    server.failure = None
    watcher.check()  # a pass in between starts the count again
    server.failure = ServerUnavailableError("connection refused")
    watcher.check()
    watcher.check()
    assert server.calls == [], "two failed probes in a row, three needed"
    recovery = watcher.check()
    assert server.calls == ["restart grace 3"] and recovery is not None and "connection refused" in recovery.reason
    assert recoveries(watcher, "probe_failed", "restart") == 1
    assert watcher.registry.get_sample_value("blip_supervisor_probes_total", {"outcome": "failed"}) == 5


def test_tritonserver_exiting_restarts_at_once() -> None:
    server = StandIn()
    watcher = supervisor(server)
    server.process = Process(returncode=-9)
    recovery = watcher.check()
    assert server.calls == ["restart grace 3"] and server.probes == [], "no probe needed: the process is gone"
    assert recovery is not None and recovery.reason == "tritonserver exited with -9"
    assert recoveries(watcher, "server_exited", "restart") == 1


def test_a_probe_naming_a_dead_stub_reloads_its_model_even_if_the_process_seemed_alive() -> None:
    server = StandIn()
    watcher = supervisor(server, failures=5)
    server.kill("text_decoder_0_0", lingering=True)
    watcher.check()
    assert server.calls == ["reload text_decoder"], "no waiting for five failed probes"
    assert any("Triton reports stub text_decoder_0_0 unhealthy" in line for line in watcher.lines)


def test_run_checks_on_its_interval_until_stopped_and_survives_a_failed_restart() -> None:
    import threading

    server = StandIn()
    watcher = supervisor(server, interval_s=0.01, failures=1)
    restarts = []

    def restart(grace_s: float) -> None:
        restarts.append(grace_s)
        if len(restarts) == 1:
            raise TritonProcessError("tritonserver did not turn ready")
        server.failure = None
        stop.set()

    server.restart = restart  # type: ignore[method-assign]
    server.failure = ServerUnavailableError("refused")
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,))
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive() and restarts == [3.0, 3.0], "the failed restart was tried again next round"
    assert any("restart failed, trying again" in line for line in watcher.lines)
