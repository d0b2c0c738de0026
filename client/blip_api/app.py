"""The API tier: ``POST /v1/frames`` with a frame and behavior questions -> one result per behavior.

The frame comes as multipart (``image`` file + ``question``/``behavior`` fields) or as the raw body
(``Content-Type: image/*`` or ``application/octet-stream``, questions in the query string). Limits are checked
before a backend is asked: 413 for a body over the size limit, 400 for a bad question list. The image itself
is validated by Triton (one decoder for every client) and its 400 passes through with Triton's message. 503
means no backend could answer. ``GET /healthz`` and ``GET /metrics`` are open; everything else needs the
bearer token, and ``/admin/*`` the admin token.

Hardening (the README's security section lists what the tests check): header blocks over ``max_header_bytes`` or
``max_headers`` get 431, a multipart body may carry one file and a bounded number of small fields, no CORS headers
are sent (browsers cannot call the API cross-origin), no interactive docs are served, and an unexpected failure
answers a bare 500 while the traceback goes to the log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from blip_api.settings import ADMIN_TOKEN_ENV, ApiSettings, Limits, SettingsError
from blip_client.errors import InvalidRequestError, NoBackendAvailableError
from blip_client.router import Router, RouterConfigError

log = logging.getLogger("blip_api")
RAW_TYPES = ("image/", "application/octet-stream")
MAX_FIELD_BYTES_PER_CHAR = 4  # UTF-8: a question field's bytes for its characters


class ApiError(Exception):
    """A request refused with ``status``; the message names what was wrong."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class BehaviorResult(BaseModel):
    behavior: str | None = Field(description="the behavior's name, or null for a free question")
    question: str
    score: float = Field(description="P(yes) against no, from the decoder's first step")
    answer: str | None = Field(description="the generated answer; null when only behaviors were asked (scores only)")
    alert: bool = Field(description="score reached the alert threshold")


class FrameResult(BaseModel):
    results: list[BehaviorResult]
    backend: str = Field(description="the fleet that answered")
    attempts: int = Field(description="backends tried, 1 unless one failed over")
    latency_ms: float


class WeightChange(BaseModel):
    # Strict: JSON false is not a weight of 0 (pydantic's lax mode would take it and drain the fleet).
    model_config = ConfigDict(extra="forbid", strict=True)

    weight: float = Field(ge=0, description="new routing weight; 0 drains the backend")


def frame_openapi(limits: Limits, behaviors: list[str]) -> dict[str, Any]:
    """The ``/v1/frames`` request as OpenAPI, from the settings in force (behavior names, limits).

    Whether the bytes decode as an image, and the total count of questions and behaviors, cannot be said in
    JSON Schema: those are the 400s the responses list.
    """
    question = {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": limits.max_question_chars, "pattern": "\\S"},
        "maxItems": limits.max_questions,
    }
    behavior = {"type": "array", "items": {"type": "string", "enum": behaviors}, "maxItems": limits.max_questions}
    binary = {"type": "string", "format": "binary", "maxLength": limits.max_image_bytes}
    at_least_one = [
        {"required": [name], "properties": {name: {"type": "array", "minItems": 1}}}
        for name in ("question", "behavior")
    ]
    # A form field is there or not: null is an absent field, which the other list may make up for.
    absent_or = {
        name: {**schema, "type": ["array", "null"]} for name, schema in (("question", question), ("behavior", behavior))
    }
    multipart = {
        "type": "object",
        "required": ["image"],
        "properties": {"image": binary, **absent_or},
        "additionalProperties": False,
        "anyOf": at_least_one,
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": multipart},
                "application/octet-stream": {"schema": binary},
                "image/*": {"schema": binary},
            },
        },
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": schema, "description": "raw bodies only"}
            for name, schema in (("question", question), ("behavior", behavior))
        ],
    }


class HeaderLimits:
    """ASGI middleware: 431 for a request with more than ``max_headers`` headers or ``max_header_bytes`` of them.

    Pure ASGI rather than ``BaseHTTPMiddleware``, so request bodies keep streaming through untouched.
    """

    def __init__(self, app: ASGIApp, limits: Callable[[], Limits]) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            limits, headers = self.limits(), scope["headers"]
            size = sum(len(name) + len(value) + 4 for name, value in headers)
            problem = None
            if len(headers) > limits.max_headers:
                problem = f"{len(headers)} request headers; the limit is {limits.max_headers}"
            elif size > limits.max_header_bytes:
                problem = f"request headers are {size} bytes; the limit is {limits.max_header_bytes}"
            if problem is not None:
                await JSONResponse({"error": problem}, status_code=431)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body is {int(declared)} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body passes the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _replay(request: Request, body: bytes) -> Request:
    """A request whose body is ``body`` again, so that the form parser can read what was already read."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


@dataclass
class ApiState:
    """What the routes share: the settings in force (a reload swaps them), the router and the status counter."""

    settings: ApiSettings
    router: Router
    served: Counter

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    def reload_config(self) -> dict[str, list[str]]:
        """Re-read the config file the API started with; the running settings stay if it is invalid."""
        path = self.settings.config_path
        if path is None:
            raise ApiError(409, "this API tier was started without a config file; nothing to reload")
        new = ApiSettings.load(path, insecure_dev=self.settings.insecure_dev)
        changes = self.router.apply_config(new.router)
        self.settings = new
        return changes


def api_state(request: Request) -> ApiState:
    return request.app.state.blip


State = Annotated[ApiState, Depends(api_state)]


def _check_token(request: Request, state: ApiState, expected: str | None, what: str) -> None:
    if state.settings.insecure_dev:
        return
    if expected is None:
        raise ApiError(403, f"{what} is disabled: no token is configured for it")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise ApiError(401, "invalid bearer token", {"WWW-Authenticate": "Bearer"})


def caller(request: Request, state: State) -> None:
    """Dependency: the camera's bearer token."""
    _check_token(request, state, state.settings.token, "the API")


def admin(request: Request, state: State) -> None:
    """Dependency: the admin bearer token."""
    _check_token(request, state, state.settings.admin_token, f"the admin API (set {ADMIN_TOKEN_ENV})")


def resolve_questions(state: ApiState, questions: list[str], behaviors: list[str]) -> list[tuple[str | None, str]]:
    """(behavior or None, question) pairs in asking order; 400 naming what is wrong with the list."""
    catalog, limits = state.settings.behaviors, state.limits
    unknown = [b for b in behaviors if b not in catalog]
    if unknown:
        raise ApiError(400, f"unknown behavior(s) {unknown}; known: {sorted(catalog)}")
    asked = [(b, catalog[b]) for b in behaviors] + [(None, q) for q in questions]
    if not asked:
        raise ApiError(400, "ask at least one question or behavior ('question' or 'behavior' fields)")
    if len(asked) > limits.max_questions:
        raise ApiError(400, f"{len(asked)} questions; at most {limits.max_questions} per frame")
    for _, question in asked:
        if not question.strip():
            raise ApiError(400, "a question is empty")
        if len(question) > limits.max_question_chars:
            raise ApiError(400, f"a question has {len(question)} characters; at most {limits.max_question_chars}")
    return asked


async def read_frame(request: Request, limits: Limits) -> tuple[bytes, list[str], list[str]]:
    """The image and the question and behavior lists, from a multipart or a raw body."""
    content_type = request.headers.get("content-type", "")
    # Room for the multipart framing and the question fields around the image.
    body = await read_capped_body(request, limits.max_image_bytes + 64 * 1024)
    if content_type.startswith("multipart/form-data"):
        try:
            form = await _replay(request, body).form(
                max_files=1,
                max_fields=2 * limits.max_questions + 8,
                max_part_size=MAX_FIELD_BYTES_PER_CHAR * limits.max_question_chars + 1024,
            )
        except Exception as error:  # the multipart parser's own errors name the problem
            raise ApiError(400, f"malformed multipart body: {error}") from error
        mixed = sorted({"question", "behavior"} & set(request.query_params))
        if mixed:
            raise ApiError(400, f"a multipart body carries its {' and '.join(mixed)} fields in the form, not the query")
        unknown = sorted(set(form) - {"image", "question", "behavior"})
        if unknown:
            raise ApiError(400, f"unknown multipart field(s) {unknown}; send 'image', 'question' and 'behavior'")
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "multipart body has no 'image' file field")
        image = await upload.read()
        questions = [str(v) for v in form.getlist("question")]
        behaviors = [str(v) for v in form.getlist("behavior")]
    elif content_type.startswith(RAW_TYPES):
        unknown = sorted(set(request.query_params) - {"question", "behavior"})
        if unknown:
            raise ApiError(400, f"unknown query parameter(s) {unknown}; send 'question' and 'behavior'")
        image = body
        questions = request.query_params.getlist("question")
        behaviors = request.query_params.getlist("behavior")
    else:
        raise ApiError(
            415,
            f"Content-Type {content_type or '(none)'} is not accepted: use multipart/form-data, image/* or application/octet-stream",
        )
    if not image:
        raise ApiError(400, "the image is empty")
    if len(image) > limits.max_image_bytes:
        raise ApiError(413, f"image is {len(image)} bytes; the limit is {limits.max_image_bytes}")
    return image, questions, behaviors


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
    image, questions, behaviors = await read_frame(request, state.limits)
    asked = resolve_questions(state, questions, behaviors)
    started = time.perf_counter()
    # Behaviors alone need probabilities, not text: one decoder step instead of a generation loop.
    scores_only = all(behavior is not None for behavior, _ in asked)
    try:
        routed = await state.router.ask(image, [q for _, q in asked], scores_only=scores_only)
    except InvalidRequestError as error:
        raise ApiError(400, str(error)) from error
    except NoBackendAvailableError as error:
        raise ApiError(503, str(error), {"Retry-After": "1"}) from error
    state.served.labels("200").inc()
    threshold = state.settings.alert_threshold
    return FrameResult(
        results=[
            BehaviorResult(behavior=b, question=q, score=round(score, 6), answer=answer, alert=score >= threshold)
            for (b, q), score, answer in zip(asked, routed.scores, routed.answers or [None] * len(asked), strict=True)
        ],
        backend=routed.backend,
        attempts=routed.attempts,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
    )


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
    """Prometheus metrics: per-backend requests, errors, latency, in flight, breaker, weight, health."""
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


def create_app(settings: ApiSettings, router: Router | None = None) -> FastAPI:
    """The FastAPI app; it owns the router (created from ``settings`` unless given) for its lifetime."""
    router = router or Router(settings.router)
    served = Counter(
        "blip_api_requests", "Frames answered or refused, by HTTP status", ["status"], registry=router.metrics.registry
    )
    state = ApiState(settings=settings, router=router, served=served)

    def reload_from_signal() -> None:
        try:
            log.warning("SIGHUP: config reloaded: %s", state.reload_config())
        except (ApiError, SettingsError, RouterConfigError) as error:
            log.error("SIGHUP: config not reloaded, the running one stays: %s", error)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await router.start()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, reload_from_signal)
        log.info("router started: %s", router.status())
        yield
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGHUP)
        await router.close()

    # No Swagger UI or ReDoc pages (they load scripts from a CDN); the OpenAPI document stays at /openapi.json.
    app = FastAPI(
        title="BLIP VQA pet-camera API",
        version="1.0",
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
        weight = document["paths"]["/admin/backends/{name}/weight"]["put"]
        for parameter in weight["parameters"]:  # the backends in force, so that a caller sees the valid names
            if parameter["name"] == "name":
                parameter["schema"]["enum"] = sorted(state.router.backends)
        return document

    app.openapi = openapi  # type: ignore[method-assign]

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

    app.include_router(routes)
    app.add_middleware(HeaderLimits, limits=lambda: state.limits)
    app.state.blip = state
    app.state.router = router
    return app
