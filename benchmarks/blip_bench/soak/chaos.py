"""Chaos: warm each fleet at full load, SIGKILL a stub, then a whole fleet; time each heal, alone and routed. Where
the repository holds two model versions, the restarted fleet then switches to the other one live, and back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from blip_bench.soak.config import FLEET_VICTIM, STUB_VICTIM, SoakConfig
from blip_bench.stack import ADMIN, ApiProcess, Fleet


class Run(Protocol):
    """What chaos needs of the run it disturbs: its settings, its clock and event log, where heals go."""

    config: SoakConfig
    heals: dict[str, Any]
    versions: tuple[int, int] | None  # (served, switched to) where the repository holds two model versions

    def event(self, name: str, **details: Any) -> None: ...

    async def until(self, t: float) -> None: ...


@dataclass
class Chaos:
    run: Run

    async def set_weights(self, api: ApiProcess, weights: dict[str, float]) -> None:
        # Raise before lowering: lowering first would drain every fleet for a moment (and the router then answers
        # 503, as it must when every weight is 0).
        async with httpx.AsyncClient(base_url=api.url, headers=ADMIN, timeout=10) as admin:
            for name, weight in sorted(weights.items(), key=lambda item: -item[1]):
                (await admin.put(f"/admin/backends/{name}/weight", json={"weight": weight})).raise_for_status()
        self.run.event("routing weights set", **weights)

    async def run_against(self, api: ApiProcess, fleets: dict[str, Fleet]) -> None:
        """Warm each fleet at full load, then kill a stub, then a whole fleet; time how long until each answers
        again, by itself and via the API."""
        config = self.run.config
        # Warm-up: all traffic on one fleet, then on the other, so that each grows its thread and connection
        # pools to what it needs when it carries everything (as it will while the other is down) before the
        # judged window starts: a pool growing once is not a leak.
        names = list(fleets)
        for index, name in enumerate(names):
            await self.set_weights(api, {other: float(other == name) for other in names})
            await self.run.until(config.warmup_s * (index + 1) / (len(names) + 1))
        await self.set_weights(api, dict.fromkeys(names, 1.0))
        await self.run.until(config.stub_kill_at)
        name, instance = STUB_VICTIM
        fleet = fleets[name]
        pid = fleet.kill_stub(instance)
        killed = time.monotonic()
        self.run.event("stub killed", fleet=name, instance=instance, pid=pid)
        heal_s = await asyncio.to_thread(fleet.wait_answering, 60.0)
        self.run.event("stub kill healed", fleet=name, answering_after_s=round(heal_s, 2))
        probe = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "blip_client", "probe", "--url", fleet.http_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.run.event(
            "blip-client probe after the heal", exit=probe.returncode, said=(probe.stdout + probe.stderr).strip()
        )
        routed_s = await self.back_in_router(api, name, killed)
        self.run.event("fleet back in the router", fleet=name, after_s=routed_s)
        self.run.heals = {
            "stub_kill_to_answer_s": round(heal_s, 2),
            "stub_kill_to_router_healthy_s": routed_s,
            "probe_exit_after_heal": probe.returncode,
        }

        await self.run.until(config.fleet_kill_at)
        fleet = fleets[FLEET_VICTIM]
        await asyncio.to_thread(fleet.kill_all)
        killed = time.monotonic()
        self.run.event("fleet killed (every process)", fleet=FLEET_VICTIM)
        await asyncio.sleep(config.restart_delay_s)
        fleet.start()
        self.run.event("fleet restarted by the runtime", fleet=FLEET_VICTIM)
        await asyncio.to_thread(fleet.wait_answering, 180.0)
        heal_s = time.monotonic() - killed
        self.run.event("fleet answering again", fleet=FLEET_VICTIM, after_kill_s=round(heal_s, 2))
        routed_s = await self.back_in_router(api, FLEET_VICTIM, killed)
        self.run.event("fleet back in the router", fleet=FLEET_VICTIM, after_s=routed_s)
        self.run.heals |= {"fleet_kill_to_answer_s": round(heal_s, 2), "fleet_kill_to_router_healthy_s": routed_s}

        if self.run.versions is not None:  # a new model version under load, as a ConfigMap update does it; then back
            served, candidate = self.run.versions
            await self.run.until(config.switch_at)
            self.run.heals["version_switch_s"] = await self.switch(fleet, candidate, "model version switched")
            await self.run.until(config.rollback_at)
            self.run.heals["version_rollback_s"] = await self.switch(fleet, served, "model version rolled back")

    async def switch(self, fleet: Fleet, version: int, what: str, timeout_s: float = 60.0) -> float | None:
        """Write ``version`` to the fleet's version file (whole, as the kubelet swaps a ConfigMap) and wait until its
        supervisor serves it; seconds taken, None if not in time."""
        if fleet.version_file is None:
            raise RuntimeError(f"fleet {fleet.name} was started without a model version file")
        started = time.monotonic()
        temporary = fleet.version_file.with_suffix(".tmp")
        temporary.write_text(f"{version}\n")
        os.replace(temporary, fleet.version_file)
        served = None
        while time.monotonic() - started < timeout_s:
            served = await asyncio.to_thread(fleet.served_version)
            if served == version:
                seconds = round(time.monotonic() - started, 2)
                self.run.event(what, fleet=fleet.name, version=version, after_s=seconds)
                return seconds
            await asyncio.sleep(0.2)
        self.run.event(f"{what}: not within {timeout_s:g} s", fleet=fleet.name, version=version, served=served)
        return None

    async def back_in_router(self, api: ApiProcess, name: str, since: float, timeout_s: float = 60.0) -> float | None:
        """Seconds from ``since`` until the API tier's probes mark the fleet healthy again (None: not in time)."""
        # The router may not have noticed the kill yet: wait to see it unhealthy first, briefly.
        for want in (False, True):
            deadline = time.monotonic() + (3.0 if not want else timeout_s)
            while time.monotonic() < deadline:
                status = await asyncio.to_thread(api.backends)
                if status[name]["healthy"] is want:
                    break
                await asyncio.sleep(0.1)
            else:
                if want:
                    return None
        return round(time.monotonic() - since, 2)
