"""The fleet heals itself: `make serve`'s supervisor restarts Triton when a stub dies or Triton exits.

The supervisor runs as `make serve` runs it (``python -m blip_serving.deploy.server``); a stub is SIGKILLed and the
time from the kill to the first answered request is measured, for each layout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from blip_client.client import BlipVqaClient
from blip_client.errors import BlipVqaError
from blip_serving.deploy.layouts import LAYOUT_NAMES
from blip_serving.deploy.server import free_port
from tests.conftest import QUESTIONS, ROOT, VALID_IMAGES

HEAL_TARGET_S = 15.0


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def name_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def tritonserver_of(supervisor: subprocess.Popen) -> int:
    (pid,) = [p for p in children(supervisor.pid) if name_of(p).endswith("tritonserver")]
    return pid


def answers(url: str, timeout_s: float = 10.0) -> bool:
    try:
        with BlipVqaClient(url, timeout_s=timeout_s) as client:
            return len(client.scores(VALID_IMAGES[0].read_bytes(), QUESTIONS[:1])) == 1
    except (BlipVqaError, OSError):
        return False


def wait_until(condition, timeout_s: float, step_s: float = 0.1) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(step_s)
    raise AssertionError(f"not within {timeout_s} s")


def recoveries(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("blip_supervisor_recoveries_total")
    )


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_a_killed_stub_and_a_killed_tritonserver_are_healed_without_an_operator(tiny_build, layout, tmp_path) -> None:
    http, metrics = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "blip_serving.deploy.server",
        "--target",
        "cpu",
        "--layout",
        layout,
        "--repository",
        str(tiny_build.repository),
        "--http-port",
        str(http),
        "--grpc-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--heal-interval-s",
        "1",
        "--supervisor-metrics-port",
        str(metrics),
    ]
    log = tmp_path / "supervisor.log"
    with log.open("w") as sink:
        supervisor = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, text=True)
    url = f"127.0.0.1:{http}"

    def told() -> str:
        lines = log.read_text().splitlines()
        return "\n".join(line for line in lines if "supervisor" in line or "error" in line.lower())[-4000:]

    try:
        wait_until(lambda: answers(url), 120, 0.5)
        heal_times = []
        for victim in ("stub", "tritonserver"):
            server = tritonserver_of(supervisor)
            pid = children(server)[0] if victim == "stub" else server
            assert victim != "stub" or "triton_python_backend_stub" in name_of(pid)
            os.kill(pid, signal.SIGKILL)
            try:
                heal_times.append(wait_until(lambda: answers(url, 5.0), HEAL_TARGET_S + 30, 0.2))
                # The supervisor counts the recovery once its own start has seen Triton ready.
                wait_until(lambda: recoveries(metrics) == len(heal_times), 30, 0.2)
            except AssertionError as error:
                raise AssertionError(f"{victim} kill not healed: {error}\n{told()}") from error
        print(
            f"{layout}: answering again {heal_times[0]:.1f} s after a stub kill, {heal_times[1]:.1f} s after a "
            "tritonserver kill"
        )
        assert all(t < HEAL_TARGET_S for t in heal_times), heal_times
        assert recoveries(metrics) == 2
        assert supervisor.poll() is None, "the supervisor stays up and keeps serving"
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(timeout=60)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait()
    output = log.read_text()
    assert supervisor.returncode == 0, output[-3000:]
    assert "supervisor: restarting Triton" in output and "ready again" in output
