"""`blip-client probe`, the fleets' Kubernetes readiness and liveness check, against the real server.

Triton's own /v2/health/ready stays 200 once a Python stub has died; the probe runs a real inference instead, so
it fails as soon as the model cannot answer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from blip_serving.layouts import LAYOUT_NAMES
from blip_serving.triton.process import TritonServer, free_port
from tests.conftest import ROOT


def probe(url: str, timeout_s: float = 5.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blip_client", "probe", "--url", url, "--timeout", str(timeout_s)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_probe_fails_in_one_line_when_nothing_listens() -> None:
    result = probe(f"127.0.0.1:{free_port()}")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("probe failed:") and "ServerUnavailableError" in result.stderr


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_probe_passes_then_fails_within_seconds_of_a_stub_kill(tiny_build, layout) -> None:
    with TritonServer(tiny_build.repository, "cpu", layout=layout) as server:
        healthy = probe(server.http_url)
        assert healthy.returncode == 0 and healthy.stdout.startswith("ok:"), healthy.stderr
        stubs = server.stub_processes()
        victim = "text_decoder_0_0" if "text_decoder_0_0" in stubs else "blip_vqa_0_0"
        os.kill(stubs[victim][0], signal.SIGKILL)
        killed = time.monotonic()
        failed = probe(server.http_url)
        detected_s = time.monotonic() - killed
        assert server.is_ready(), "Triton's own readiness still says 200: why the probe runs an inference"
        assert failed.returncode == 1 and "probe failed" in failed.stderr, failed.stdout
        assert detected_s < 10, f"the probe took {detected_s:.1f} s to fail"
        print(f"{layout}: probe failed {detected_s:.2f} s after {victim} was killed: {failed.stderr.strip()}")
        server.stop(grace_s=5)
