"""The API tier: ``POST /v1/frames`` with a frame and behavior questions -> one result per behavior; a camera's
frames, events and webhooks under ``/v1/cameras/{camera_id}``; the operator's ``/admin`` routes.

The frame comes as multipart (``image`` file + ``question``/``behavior`` fields) or as the raw body
(``Content-Type: image/*`` or ``application/octet-stream``); questions and behaviors may be query parameters with
either. Limits are checked before a fleet is asked: 413 for a body over the size limit, 400 for a bad question
list or a frame that does not decode (``[api] send = "pixels"`` decodes and resizes it here; with ``"image"`` the
fleet decodes it and its 400 passes through with its message), 422 for a request FastAPI cannot bind (a query
value of the wrong type, a JSON body of the wrong shape). 503 means no fleet could answer. ``GET /livez``,
``GET /healthz``, ``GET /metrics``, ``/openapi.json`` and ``/docs`` are open; everything else needs a bearer token:
the callers' token, a camera's own on its routes, the admin token on ``/admin/*``. With a metrics port of its own,
``/metrics`` is served there only (the cluster's manifests set one, so the public port carries no metrics).

Hardening (docs/security.md lists what the tests check): header blocks over ``max_header_bytes`` or
``max_headers`` get 431, a multipart body may carry one file and a bounded number of small fields, no CORS headers
are sent (browsers cannot call the API cross-origin), the interactive docs at ``/docs`` load nothing from another
origin, and an unexpected failure answers a bare 500 while the traceback goes to the log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, Counter, start_http_server
from starlette.exceptions import HTTPException as StarletteHTTPException

from blip_api.cameras import cameras
from blip_api.docs_ui import docs_ui
from blip_api.errors import ApiError
from blip_api.routes import routes
from blip_api.schemas import QueryNames, camera_frame_openapi, frame_openapi
from blip_api.security import HeaderLimits
from blip_api.settings import ApiSettings, SettingsError
from blip_api.state import ApiState, BehaviorMetrics
from blip_api.telemetry import instrument
from blip_api.tracing import RequestIds
from blip_client.router import Router
from blip_client.router_config import RouterConfigError
from blip_contract.version import __version__
from blip_events.metrics import EventMetrics
from blip_events.mqtt import MqttPublisher
from blip_events.service import CameraService
from blip_events.store import Store
from blip_events.worker import DeliveryWorker

log = logging.getLogger("blip_api")


async def retention(state: ApiState) -> None:
    """Delete events older than ``[cameras] retention_days``, every ``retention_interval_s``, until cancelled."""
    while True:
        service = state.cameras
        if service is not None:
            limits = service.defaults.cameras
            try:
                removed = await asyncio.to_thread(service.store.purge, time.time() - limits.retention_days * 86400)
                if removed:
                    log.info("retention: %d event(s) older than %g days deleted", removed, limits.retention_days)
            except Exception:  # the next run tries again
                log.exception("retention run failed")
        await asyncio.sleep(state.settings.events.cameras.retention_interval_s)


def openapi_text(app: FastAPI) -> str:
    """The app's OpenAPI document as ``docs/openapi.json`` holds it (``make openapi``; a test diffs the two)."""
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"


def create_app(
    settings: ApiSettings,
    router: Router | None = None,
    metrics_address: tuple[str, int] | None = None,
) -> FastAPI:
    """The FastAPI app; it owns the router (created from ``settings`` unless given) for its lifetime.
    ``metrics_address``: (address, port) where ``/metrics`` is served instead of the public port."""
    router = router or Router(settings.router)
    registry = router.metrics.registry
    served = Counter("blip_api_requests", "Frames answered or refused, by HTTP status", ["status"], registry=registry)
    # The process itself: CPU seconds, resident memory, open files, GC pauses, as every Python exporter reports.
    for collector in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):
        with contextlib.suppress(ValueError):  # already there: a router handed to a second app
            registry.register(collector)
    state = ApiState(
        settings=settings,
        router=router,
        served=served,
        behaviors=BehaviorMetrics(registry),
        metrics_port=metrics_address[1] if metrics_address else None,
    )

    def reload_from_signal() -> None:
        try:
            log.warning("SIGHUP: config reloaded: %s", state.reload_config())
        except (ApiError, SettingsError, RouterConfigError) as error:
            log.error("SIGHUP: config not reloaded, the running one stays: %s", error)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics_server = None
        if metrics_address:
            metrics_server, _ = start_http_server(metrics_address[1], metrics_address[0], registry=registry)
            log.info("metrics on %s:%d", *metrics_address)
        await router.start()
        state.start_canary(state.settings)
        store = Store(settings.db_url, pool_size=settings.store.pool_size, token_key=settings.token_hash_key)
        await asyncio.to_thread(store.migrate)
        metrics = EventMetrics(registry, sorted(state.settings.behaviors))
        cameras = state.cameras = CameraService(store, state.settings.events, metrics)
        mqtt = settings.events.mqtt
        batch = state.settings.events.webhooks.batch
        publisher = MqttPublisher(mqtt, settings.mqtt_password, batch) if mqtt.enabled else None
        worker = DeliveryWorker(store, lambda: state.settings.events.webhooks, metrics, publisher)
        background = [
            asyncio.create_task(worker.run(), name="deliveries"),
            asyncio.create_task(retention(state), name="retention"),
        ]
        log.info(
            "event store %s migrated; delivery worker started (webhooks%s)",
            store.engine.url.render_as_string(hide_password=True),
            f", MQTT to {publisher.where}" if publisher else "",
        )
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, reload_from_signal)
        log.info("router started: %s", router.status())
        yield
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGHUP)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if publisher is not None:
            await asyncio.to_thread(publisher.close)
        await asyncio.to_thread(cameras.close)
        state.cameras = None
        await asyncio.to_thread(store.close)
        if state.canary is not None:
            state.canary.close()
        await router.close()
        if metrics_server is not None:
            metrics_server.shutdown()

    # FastAPI's own Swagger UI and ReDoc pages load their scripts from a CDN: /docs is docs_ui's, self-hosted.
    app = FastAPI(
        title="BLIP VQA pet-camera API",
        version=__version__,
        description=__doc__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        if request.url.path == "/v1/frames":
            served.labels(str(error.status)).inc()
        return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)

    def openapi() -> dict[str, Any]:
        """FastAPI's document with the frame request described from the settings in force (a reload changes it)."""
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        frames = document["paths"]["/v1/frames"]["post"]
        frames.update(frame_openapi(state.limits, sorted(state.settings.behaviors)))
        camera_frames = document["paths"]["/v1/cameras/{camera_id}/frames"]["post"]
        path_parameters = [p for p in camera_frames.get("parameters", []) if p["in"] == "path"]
        camera_frames.update(camera_frame_openapi(state.limits))
        camera_frames["parameters"] = path_parameters + camera_frames["parameters"]
        weight = document["paths"]["/admin/backends/{name}/weight"]["put"]
        for parameter in weight["parameters"]:  # the backends in force, so that a caller sees the valid names
            if parameter["name"] == "name":
                parameter["schema"]["enum"] = sorted(state.router.backends)
        return document

    app.openapi = openapi  # type: ignore[method-assign]

    @functools.cache
    def query_names() -> QueryNames:
        """Read from the document once, at the first query (the names do not change with a reload)."""
        return QueryNames(openapi())

    async def known_query_parameters(request: Request) -> None:
        """Every route's dependency: its query holds only the parameters the document declares for it."""
        route = getattr(request.scope.get("route"), "path", None)
        if request.query_params and route is not None:
            query_names().check(request.method, route, list(request.query_params))

    # Every refusal has the same body, {"error": "..."}: FastAPI's own (404, 405, a body it cannot parse, a
    # validation failure) included, without echoing the input back.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # The traceback is for the operator's log; the caller learns only that it was not their fault.
        log.exception("unexpected failure on %s %s", request.method, request.url.path)
        if request.url.path == "/v1/frames":
            served.labels("500").inc()
        return JSONResponse({"error": "internal error in the API tier; it is logged"}, status_code=500)

    app.include_router(routes, dependencies=[Depends(known_query_parameters)])
    app.include_router(cameras, dependencies=[Depends(known_query_parameters)])
    app.include_router(docs_ui)
    app.add_middleware(HeaderLimits, limits=lambda: state.limits)
    # Outermost: even a 431 carries its request id and has its access line.
    app.add_middleware(RequestIds)
    instrument(app)
    app.state.blip = state
    app.state.router = router
    return app
