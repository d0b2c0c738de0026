"""The health probe: one real scores-only inference of a known-good frame (a 16x16 image through ``blip_vqa``; for
the router, flat pixels through ``blip_vqa_pixels``, the path the API tier's frames take).

One rule for every prober (the router's probe loop, the supervisor, ``blip-client probe`` for Kubernetes, the
benchmarks' fleets): Triton's ``/v2/health/ready`` stays 200 when a Python stub has died and every inference fails;
this does not. The verdict:

- one score back: passed;
- the request refused (400): passed, with a note. The server answered, and the probe's own request is the known
  one, so a refusal is never a server failure (a deployment with stricter limits, say), and never heals anything;
- anything else (server error, unavailable, timeout, a short answer): failed, with one line saying why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from blip_client.errors import BlipVqaError, InvalidRequestError
from blip_client.wire import PROBE_IMAGE, PROBE_PIXELS, PROBE_QUESTIONS

if TYPE_CHECKING:
    from blip_client.async_client import AsyncBlipVqaClient
    from blip_client.client import BlipVqaClient


@dataclass
class ProbeResult:
    ok: bool
    seconds: float
    at: float  # time.monotonic() when it ended
    error: str = ""  # why it failed, one line
    note: str = ""  # a passed probe whose request was refused says so here


def one_line(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def _verdict(started: float, scores: list[float] | None = None, error: BaseException | None = None) -> ProbeResult:
    seconds, now = time.perf_counter() - started, time.monotonic()
    if isinstance(error, InvalidRequestError):
        return ProbeResult(True, seconds, now, note=f"the probe itself was refused ({one_line(error)})")
    if error is not None:
        return ProbeResult(False, seconds, now, error=one_line(error))
    if scores is None or len(scores) != len(PROBE_QUESTIONS):
        return ProbeResult(False, seconds, now, error=f"expected {len(PROBE_QUESTIONS)} score(s), got {scores!r}")
    return ProbeResult(True, seconds, now)


def probe(client: BlipVqaClient) -> ProbeResult:
    """Probe through a blocking client (its own timeout bounds the call)."""
    started = time.perf_counter()
    try:
        scores = client.scores(PROBE_IMAGE, PROBE_QUESTIONS)
    except (BlipVqaError, OSError) as error:
        return _verdict(started, error=error)
    return _verdict(started, scores)


def probe_url(url: str, timeout_s: float, connect: Callable[[str, float], BlipVqaClient]) -> ProbeResult:
    """Connect to ``url`` (``connect(url, timeout_s)``), probe, close; a failure to connect fails the probe."""
    started = time.perf_counter()
    try:
        with connect(url, timeout_s) as client:
            return probe(client)
    except (BlipVqaError, OSError) as error:
        return _verdict(started, error=error)


async def probe_async(client: AsyncBlipVqaClient, timeout_s: float) -> ProbeResult:
    """Probe through the asyncio client within ``timeout_s``, on the path the API tier's frames take: the fleet's
    pixel settings read again (a fleet without them fails here, in one line), then one inference of a flat frame
    through ``blip_vqa_pixels``."""
    started = time.perf_counter()
    try:
        await client.read_pixel_settings(timeout_s)
        result = await client.infer(PROBE_PIXELS, PROBE_QUESTIONS, timeout_s=timeout_s, scores_only=True)
    except (BlipVqaError, OSError) as error:
        return _verdict(started, error=error)
    return _verdict(started, list(result.scores))
