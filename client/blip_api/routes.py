"""The routes: ``POST /v1/frames``, ``/livez``, ``/healthz``, ``/metrics`` and the admin API."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from blip_api.errors import ApiError
from blip_api.frames import ask_fleet, frame_of, read_frame, resolve_questions
from blip_api.schemas import BehaviorResult, FrameResult, Promotion, WeightChange
from blip_api.security import admin, caller
from blip_api.settings import SettingsError
from blip_api.state import ApiState, State
from blip_client.canary import Canary, CanaryRefused, CanaryReport
from blip_client.router_config import RouterConfigError
from blip_contract import reaches

routes = APIRouter()


@routes.post(
    "/v1/frames",
    response_model=FrameResult,
    dependencies=[Depends(caller)],
    responses={
        400: {"description": "bad image or questions"},
        401: {"description": "missing or wrong bearer token"},
        413: {"description": "body over the size limit"},
        415: {"description": "unsupported Content-Type"},
        431: {"description": "too many or too large request headers"},
        503: {"description": "no backend could answer"},
    },
)
async def frames(request: Request, state: State) -> FrameResult:
    """Ask behavior questions about one camera frame."""
    frame = await read_frame(request, state.limits)
    asked = resolve_questions(state, frame.questions, frame.behaviors)
    started = time.perf_counter()
    # Behaviors alone need probabilities, not text: one decoder step instead of a generation loop.
    scores_only = all(behavior is not None for behavior, _ in asked)
    routed = await ask_fleet(state, frame_of(state, frame.image), [q for _, q in asked], scores_only=scores_only)
    state.served.labels("200").inc()
    threshold = state.settings.alert_threshold
    return FrameResult(
        results=[
            BehaviorResult(
                behavior=b, question=q, score=round(score, 6), answer=answer, alert=reaches(score, threshold)
            )
            for (b, q), score, answer in zip(asked, routed.scores, routed.answers or [None] * len(asked), strict=True)
        ],
        backend=routed.backend,
        attempts=routed.attempts,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
    )


@routes.get("/livez")
async def livez() -> dict[str, str]:
    """200 while this process serves HTTP: the pods' readiness and liveness. It does not follow the fleets: during
    a fleet outage the API stays in its Service and answers frames itself with 503 and ``Retry-After``."""
    return {"status": "ok"}


@routes.get("/healthz", responses={503: {"description": "no backend passes its probes"}})
async def healthz(state: State) -> JSONResponse:
    """200 while at least one backend passes its probes and takes traffic; 503 otherwise."""
    router = state.router
    serving = any(b.healthy and b.takes_traffic() for b in router.backends.values())
    return JSONResponse(
        {"status": "ok" if serving else "unavailable", "backends": router.status()}, 200 if serving else 503
    )


@routes.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}
    },
)
async def metrics(state: State) -> Response:
    """Prometheus metrics: per-backend requests, errors, latency, in flight, breaker, weight, health; the process.
    404 where a metrics port of its own is set (``--metrics-port``): then only that port serves them."""
    if state.metrics_port is not None:
        raise ApiError(404, f"metrics are served on port {state.metrics_port}")
    return Response(state.router.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong admin bearer token"},
    403: {"description": "the admin API is disabled: no admin token is configured"},
}


@routes.get("/admin/backends", dependencies=[Depends(admin)], responses=ADMIN_RESPONSES)
async def backends(state: State) -> dict[str, Any]:
    return state.router.status()


@routes.put(
    "/admin/backends/{name}/weight",
    dependencies=[Depends(admin)],
    responses=ADMIN_RESPONSES
    | {400: {"description": "the body is not JSON"}, 404: {"description": "no backend of that name"}},
)
async def set_weight(name: str, change: WeightChange, state: State) -> dict[str, Any]:
    """Change one fleet's routing weight now; no restart, no dropped request."""
    try:
        state.router.set_weight(name, change.weight)
    except KeyError as error:
        raise ApiError(404, str(error.args[0])) from error
    return state.router.status()


@routes.post(
    "/admin/reload",
    dependencies=[Depends(admin)],
    responses=ADMIN_RESPONSES
    | {400: {"description": "the config file is invalid; the running one stays"}, 409: {"description": "no file"}},
)
async def reload(state: State) -> dict[str, Any]:
    """Re-read the config file (also on SIGHUP): weights, backends, limits, behaviors."""
    try:
        changes = state.reload_config()
    except (SettingsError, RouterConfigError) as error:
        raise ApiError(400, f"config not reloaded, the running one stays: {error}") from error
    return {"changes": changes, "backends": state.router.status()}


def _canary(state: ApiState) -> Canary:
    if state.canary is None:
        raise ApiError(404, "no canary: the config file has no [canary] section")
    return state.canary


@routes.get(
    "/admin/canary",
    dependencies=[Depends(admin)],
    responses=ADMIN_RESPONSES | {404: {"description": "no [canary] in the config"}},
)
async def canary_report(state: State) -> CanaryReport:
    """What the candidate fleet did on the mirrored frames: agreement, |score delta| and alert flips per behaviour,
    latency against the current fleet, and whether promotion would go ahead."""
    return _canary(state).report()


@routes.post(
    "/admin/canary/promote",
    dependencies=[Depends(admin)],
    responses=ADMIN_RESPONSES
    | {
        400: {"description": "the body is not JSON"},
        404: {"description": "no [canary] in the config"},
        409: {"description": "promotion refused: the reason"},
    },
)
async def canary_promote(change: Promotion, state: State) -> CanaryReport:
    """Move the candidate to the next step of its share of routed traffic; refused (409, with the reason) while it
    has too few mirrored frames or agrees too little, unless ``force``."""
    try:
        return _canary(state).promote(force=change.force)
    except CanaryRefused as error:
        raise ApiError(409, f"promotion refused: {error}") from error
