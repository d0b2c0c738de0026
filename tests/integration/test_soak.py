"""`make soak` for 90 seconds inside `make test`: the API tier and two self-healing fleets under mixed traffic.

Mid-run a Python stub of fleet ``gpu`` is SIGKILLed and must be healed by its own supervisor within 15 s, with
`blip-client probe` passing again and no caller request failing through the router; then every process of fleet
``neuron`` is SIGKILLed and the fleet started again, as a container runtime would; then it switches live to model
version 2 (another checkpoint) through its version file, and back to version 1. The full run (600 s) is
`make soak`; its report is committed in benchmarks/results/.
"""

from __future__ import annotations

import shutil

from blip_bench.soak import HEAL_TARGET_S, Soak, SoakConfig, configure_repository, summary, write
from blip_serving.versions import VersionStore


def test_a_90s_soak_loses_no_valid_request_heals_both_kills_switches_versions_and_leaks_nothing(
    two_versions, tmp_path
) -> None:
    repository = tmp_path / "model_repository"
    shutil.copytree(two_versions, repository, ignore=shutil.ignore_patterns("configs"))
    configure_repository(repository, VersionStore(two_versions.parent / "artifacts" / "cpu").path(1))
    report = Soak(SoakConfig(seconds=90), repository, tmp_path / "run", versions=(1, 2)).run()
    write(report, tmp_path / "soak")
    print("\n" + summary(report))

    assert report["valid_requests"] > 100 and report["bad_requests"] > 100
    assert report["valid_failed"] == 0, report["unexpected"][:5]
    assert report["bad_with_wrong_status"] == 0, report["unexpected"][:5]
    heals = report["heals"]
    assert heals["stub_kill_to_answer_s"] < HEAL_TARGET_S and heals["probe_exit_after_heal"] == 0
    assert heals["stub_kill_to_router_healthy_s"] is not None and heals["fleet_kill_to_router_healthy_s"] is not None
    # Version 2 (another checkpoint) served under load, then version 1 again: no valid request failed meanwhile.
    assert heals["version_switch_s"] is not None and heals["version_rollback_s"] is not None, report["events"][-6:]
    # Every status a bad request can get was seen: the traffic really was mixed.
    seen = {status for counts in report["by_kind_and_status"].values() for status in counts}
    assert {"200", "400", "401", "413", "415", "431"} <= seen
    assert report["passed"], [name for name, ok in report["checks"].items() if not ok]
    assert (tmp_path / "soak.png").stat().st_size > 10_000
