"""The supervisor's decisions, against a stand-in server: which failure gets a reload, which a restart.

The real server is healed in tests/integration/test_self_healing.py and under load in test_soak.py; here each
branch is driven on purpose, including the ones a real run reaches rarely (a reload that fails, the restart
after ``reloads_per_restart`` reloads that each leave threads behind in Triton).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from blip_serving.deploy.server import ServerError, TritonServer
from blip_serving.deploy.supervisor import Supervisor


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
    process: Process = field(default_factory=Process)
    calls: list[str] = field(default_factory=list)
    model_of = staticmethod(TritonServer.model_of)

    def __post_init__(self) -> None:
        self.ready_stubs = set(self.stubs)
        self.running = set(self.stubs)

    def stub_processes(self) -> dict[str, tuple[int, list[str]]]:
        return {name: (1, []) for name in self.running}

    def reload_model(self, model: str) -> None:
        self.calls.append(f"reload {model}")
        if self.reload_fails:
            raise ServerError(f"load {model} failed")
        self.running |= {s for s in self.stubs if self.model_of(s) == model}

    def restart(self, grace_s: float) -> None:
        self.calls.append("restart")
        self.running, self.process = set(self.stubs), Process()


def supervisor(server: StandIn, answers: bool = True) -> Supervisor:
    watcher = Supervisor(server, log=lambda line: None)  # type: ignore[arg-type]
    watcher.probe = lambda: None if answers else "ServerError: [500]"  # type: ignore[method-assign]
    watcher._stubs = set(server.ready_stubs)
    return watcher


def test_a_dead_stub_reloads_only_its_model() -> None:
    server = StandIn()
    watcher = supervisor(server)
    server.running.discard("text_decoder_0_0")
    watcher.check()
    assert server.calls == ["reload text_decoder"]


def test_reloads_give_way_to_a_restart_after_the_limit() -> None:
    server = StandIn()
    watcher = supervisor(server)
    for _ in range(watcher.reloads_per_restart + 2):
        server.running.discard("text_decoder_0_0")
        watcher.check()
    limit = watcher.reloads_per_restart
    assert server.calls == ["reload text_decoder"] * limit + ["restart", "reload text_decoder"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"reload_fails": True}, ["reload text_decoder", "restart"]),
        ({"model_control_secret": None}, ["restart"]),
    ],
)
def test_a_reload_that_cannot_happen_or_fails_restarts_triton(change, expected) -> None:
    server = StandIn(**change)
    watcher = supervisor(server)
    server.running.discard("text_decoder_0_0")
    watcher.check()
    assert server.calls == expected


def test_a_reloaded_model_that_still_fails_restarts_triton(monkeypatch) -> None:
    server = StandIn()
    watcher = supervisor(server, answers=False)
    monkeypatch.setattr("blip_serving.deploy.supervisor.time.sleep", lambda s: None)
    server.running.discard("text_decoder_0_0")
    watcher.check()
    assert server.calls == ["reload text_decoder", "restart"]


def test_tritonserver_exiting_and_failed_probes_restart_but_one_failed_probe_does_not() -> None:
    server = StandIn()
    watcher = supervisor(server, answers=False)
    watcher.check()
    assert server.calls == [], "one failed probe is not enough"
    watcher.check()
    assert server.calls == ["restart"]
    server.process = Process(returncode=-9)
    watcher.check()
    assert server.calls == ["restart", "restart"]


def test_a_probe_naming_a_dead_stub_reloads_its_model_even_if_the_process_seemed_alive() -> None:
    server = StandIn()
    watcher = supervisor(server)
    answers = iter(["ServerError: [500] Stub process 'text_decoder_0_0' is not healthy.", None])
    watcher.probe = lambda: next(answers)  # type: ignore[method-assign]
    watcher.check()
    assert server.calls == ["reload text_decoder"]
