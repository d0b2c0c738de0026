"""What the stubs inherit from the server: OpenMP workers that sleep after a short spin, unless the caller says."""

from __future__ import annotations

import pytest

from blip_serving.triton.environment import OPENMP_WAIT, openmp_wait
from blip_serving.triton.process import TritonServer


def test_stubs_get_a_short_spin_then_sleep_by_default(tmp_path, monkeypatch) -> None:
    for name in OPENMP_WAIT:
        monkeypatch.delenv(name, raising=False)
    environment = TritonServer(tmp_path, "cpu").environment()
    assert {name: environment[name] for name in OPENMP_WAIT} == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}


@pytest.mark.parametrize(
    "own",
    [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "0"}, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "9"}],
)
def test_a_callers_own_openmp_wait_setting_wins_whole(own) -> None:
    # Adding our spin count to a caller's ACTIVE would cut ACTIVE's spin short: the caller's settings go alone.
    assert openmp_wait({"PATH": "/bin", **own}) == own
