"""The fleet heals itself: `make serve`'s supervisor reloads a model whose stub died and restarts Triton when it exits.

The supervisor runs as `make serve` runs it (``python -m blip_serving.serve``); a stub is SIGKILLed and the
time from the kill to the first answered request is measured, for each layout; then tritonserver itself.
"""

from __future__ import annotations

import signal
import time
import urllib.request

import pytest

from blip_bench.stack import Fleet
from blip_serving.layouts import LAYOUT_NAMES

HEAL_TARGET_S = 15.0


def wait_until(condition, timeout_s: float, step_s: float = 0.1) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(step_s)
    raise AssertionError(f"not within {timeout_s} s")


def recoveries(metrics_port: int, action: str = "") -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("blip_supervisor_recoveries_total") and f'action="{action}' in line
    )


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_a_killed_stub_and_a_killed_tritonserver_are_healed_without_an_operator(tiny_build, layout, tmp_path) -> None:
    fleet = Fleet(layout, layout, tiny_build.repository, tmp_path).start()
    log = tmp_path / f"fleet-{layout}-1.log"

    def told() -> str:
        lines = log.read_text().splitlines()
        return "\n".join(line for line in lines if "supervisor" in line or "error" in line.lower())[-4000:]

    try:
        fleet.wait_answering(120)
        heal_times = []
        for victim in ("stub", "tritonserver"):
            processes = fleet.processes()
            stub = next(role for role in processes if role.startswith("stub:"))
            process = processes[stub if victim == "stub" else "tritonserver"]
            process.send_signal(signal.SIGKILL)
            try:
                heal_times.append(wait_until(lambda: fleet.answers(5.0), HEAL_TARGET_S + 30, 0.2))
                # The supervisor counts the recovery once its own start has seen Triton ready.
                wait_until(lambda: recoveries(fleet.supervisor_port) == len(heal_times), 30, 0.2)
            except AssertionError as error:
                raise AssertionError(f"{victim} kill not healed: {error}\n{told()}") from error
        print(
            f"{layout}: answering again {heal_times[0]:.1f} s after a stub kill, {heal_times[1]:.1f} s after a "
            "tritonserver kill"
        )
        assert all(t < HEAL_TARGET_S for t in heal_times), heal_times
        assert recoveries(fleet.supervisor_port, "reload") == 1 and recoveries(fleet.supervisor_port, "restart") == 1
        assert fleet.process.poll() is None, "the supervisor stays up and keeps serving"
    finally:
        fleet.stop()
    output = log.read_text()
    assert fleet.process.returncode == 0, output[-3000:]
    # A dead stub: only its model is reloaded. A dead tritonserver: Triton restarts.
    assert "supervisor: reloading" in output and "model(s) answering again" in output
    assert "supervisor: restarting Triton" in output and "Triton ready again" in output
