"""Immutable model versions on a real Triton: two builds of two checkpoints are versions 1 and 2; a server serves
version 1, switches to 2 under load without one failed request, and rolls back; the supervisor follows the version
file, and refuses a version it cannot serve while the served one keeps answering."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from blip_bench.frames import BEHAVIOR_QUESTIONS, SAMPLE
from blip_client.client import BlipVqaClient
from blip_serving import serve
from blip_serving.layouts import LAYOUT_NAMES
from blip_serving.supervisor import Supervisor
from blip_serving.triton.process import TritonServer
from blip_serving.versions import VersionError

IMAGE = SAMPLE.read_bytes()


def scores(url: str) -> list[float]:
    with BlipVqaClient(url) as client:
        return client.infer(IMAGE, BEHAVIOR_QUESTIONS, scores_only=True).scores


class Load:
    """Callers asking without pause until stopped: every answer's scores, every failure."""

    def __init__(self, url: str, callers: int = 4) -> None:
        self.url, self.stop = url, threading.Event()
        self.answers: list[list[float]] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._call, daemon=True) for _ in range(callers)]

    def _call(self) -> None:
        with BlipVqaClient(self.url, timeout_s=60) as client:
            while not self.stop.is_set():
                try:
                    self.answers.append(client.infer(IMAGE, BEHAVIOR_QUESTIONS, scores_only=True).scores)
                except Exception as error:  # every failure counts, whatever its type
                    self.failures.append(f"{type(error).__name__}: {error}")

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_switching_versions_under_load_fails_no_request_and_rolls_back(two_versions, layout) -> None:
    with TritonServer(two_versions, "cpu", layout=layout, model_control=True, model_version=1) as server:
        assert server.served.version == 1
        first = scores(server.http_url)
        with Load(server.http_url) as load:
            time.sleep(1.0)
            before = len(load.answers)
            assert server.switch_version(2).version == 2
            switched = len(load.answers)
            time.sleep(1.0)
        assert load.failures == [], load.failures[:3]
        assert before > 0 and len(load.answers) > switched, "callers were answered before, during and after"
        second = scores(server.http_url)
        assert not np.allclose(first, second, atol=1e-4), "version 2 is another checkpoint"
        if layout == "colocated":  # one model: every answer is one version's or the other's, never a mix
            assert all(np.allclose(a, first, atol=1e-4) or np.allclose(a, second, atol=1e-4) for a in load.answers)
        with Load(server.http_url) as load:
            time.sleep(0.5)
            server.switch_version(1)  # the rollback is the same call
            time.sleep(0.5)
        assert load.failures == [] and np.allclose(scores(server.http_url), first, atol=1e-5)


def test_the_supervisor_follows_the_version_file_and_refuses_what_it_cannot_serve(two_versions, tmp_path) -> None:
    version_file = tmp_path / "version"
    logged: list[str] = []
    argv = ["--target", "cpu", "--repository", str(two_versions), "--model-version-file", str(version_file)]
    assert serve.main([*argv, "--set-model-version", "1"]) == 0 and version_file.read_text() == "1\n"
    assert serve.main([*argv, "--set-model-version", "9"]) == 2, "a version that does not exist is never written"
    assert version_file.read_text() == "1\n"
    with TritonServer(two_versions, "cpu", layout="colocated", model_control=True, model_version=1) as server:
        supervisor = Supervisor(server, version_file=version_file, log=logged.append)
        first = scores(server.http_url)
        supervisor.follow_version()
        assert server.served.version == 1 and supervisor.version._value.get() == 1 and not logged
        assert serve.main([*argv, "--set-model-version", "2"]) == 0
        supervisor.follow_version()
        assert server.served.version == 2 and supervisor.version._value.get() == 2
        assert logged[-1] == "supervisor: serving model version 2"
        assert not np.allclose(scores(server.http_url), first, atol=1e-4)
        version_file.write_text("7\n")  # written by hand, past the command's check
        supervisor.follow_version()
        supervisor.follow_version()
        refusals = [line for line in logged if "refused" in line]
        assert len(refusals) == 1 and "model version 7 is not in" in refusals[0], "refused once, in the log"
        assert server.served.version == 2 and scores(server.http_url), "the served version keeps answering"
        version_file.write_text("1\n")
        supervisor.follow_version()
        assert server.served.version == 1 and np.allclose(scores(server.http_url), first, atol=1e-5)
        switched = supervisor.switches.labels("switched")._value.get()
        assert switched == 2 and supervisor.switches.labels("refused")._value.get() == 1


def test_a_server_cannot_be_started_on_a_version_that_does_not_exist(two_versions) -> None:
    server = TritonServer(two_versions, "cpu", layout="colocated", model_version=5)
    with pytest.raises(VersionError, match=r"model version 5 is not in .* \(versions there: 1, 2\)"):
        server.start()
    server.stop()
