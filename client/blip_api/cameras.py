"""The camera routes: cameras and their credentials (admin), a camera's frames, its events, their key frames and
stream, and the dead-letter list. The logic is ``blip_events``'; these routes authenticate, parse and answer.

Auth: a camera's own bearer token works on its own routes only (403 on another camera's, 401 when missing or
wrong); the admin token may read any camera's events. Tokens are compared in constant time, as keyed hashes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from blip_api.errors import ApiError
from blip_api.frames import ask_fleet, frame_of, read_frame
from blip_api.security import ADMIN_TOKEN, CAMERA_TOKEN, Declared, admin, bearer_token
from blip_api.state import ApiState, State
from blip_events.records import FrameOutcome
from blip_events.service import CameraService, FrameRefused, Scored
from blip_events.settings import CAMERA_ID_PATTERN, CameraPatch
from blip_images.frame import Frame

cameras = APIRouter()
CAMERA_ID = re.compile(CAMERA_ID_PATTERN)
STREAM_POLL_S = 0.5
STREAM_HEARTBEAT_S = 15.0
CAMERA_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed camera id, cursor, image or captured_at"},
    401: {"description": "missing or wrong bearer token"},
    403: {"description": "the token is another camera's"},
    404: {"description": "no such camera or event"},
    422: {"description": "a query parameter of the wrong type or range"},
}
ADMIN_CAMERA_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed camera id, a bad setting or a refused webhook URL"},
    401: {"description": "missing or wrong admin bearer token"},
    403: {"description": "the admin API is disabled: no admin token is configured"},
    404: {"description": "no such camera"},
    422: {"description": "the body is not a camera's settings (an unknown key, a wrong type)"},
}


def service(state: ApiState) -> CameraService:
    if state.cameras is None:
        raise ApiError(503, "the event store is not running")
    return state.cameras


def camera_id_of(camera_id: str) -> str:
    if not CAMERA_ID.fullmatch(camera_id):
        raise ApiError(400, f"camera id {camera_id[:80]!r} must be 1 to 64 letters, digits, '.', '_' or '-'")
    return camera_id


async def _authorize(request: Request, state: ApiState, camera_id: str, *, admin_may: bool) -> None:
    camera_id_of(camera_id)
    if state.settings.insecure_dev:
        return
    token = bearer_token(request)
    expected = state.settings.admin_token
    if admin_may and expected and hmac.compare_digest(token.encode(), expected.encode()):
        return
    try:
        await asyncio.to_thread(service(state).authorize, camera_id, token)
    except FrameRefused as error:
        raise _refused(error) from None


async def camera_token(
    request: Request, camera_id: str, state: State, _: Annotated[Declared, Depends(CAMERA_TOKEN)]
) -> str | None:
    """Dependency of the frame route: a bearer token is there (401 if not). Whose it is, the service checks
    against the camera's row as the frame reads it, without a query of its own. None: insecure development."""
    camera_id_of(camera_id)
    return None if state.settings.insecure_dev else bearer_token(request)


async def camera_or_admin(
    request: Request,
    camera_id: str,
    state: State,
    _: Annotated[Declared, Depends(CAMERA_TOKEN)],
    __: Annotated[Declared, Depends(ADMIN_TOKEN)],
) -> None:
    """Dependency: the camera's own token, or the admin token."""
    await _authorize(request, state, camera_id, admin_may=True)


def parse_time(value: str, what: str) -> float:
    """An RFC 3339 date-time with its offset (``2026-12-03T10:00:00.5Z``) as unix seconds, else 400."""
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value.upper():
        raise ApiError(
            400, f"{what} {value[:64]!r} is not an RFC 3339 date-time with an offset (e.g. 2026-12-03T10:00:00Z)"
        )
    return parsed.astimezone(UTC).timestamp()


def _refused(error: FrameRefused) -> ApiError:
    return ApiError(error.status, error.message, {"WWW-Authenticate": "Bearer"} if error.status == 401 else None)


# ---- cameras (admin) -------------------------------------------------------------------------------------------


def _camera_body(svc: CameraService, camera_id: str, patch: CameraPatch, credentials: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"camera_id": camera_id, **svc.defaults.resolve(patch).model_dump()}
    if credentials is not None:
        body |= {"token": credentials.token, "webhook_secret": credentials.webhook_secret}
    return body


@cameras.put(
    "/admin/cameras/{camera_id}",
    dependencies=[Depends(admin)],
    responses=ADMIN_CAMERA_RESPONSES | {201: {"description": "created, with the token and webhook secret, once"}},
)
async def put_camera(camera_id: str, patch: CameraPatch, state: State, rotate_token: bool = False) -> JSONResponse:
    """Create a camera (every setting optional: ``{}`` takes the defaults) or change the settings it names. The
    reply carries the camera's token and webhook secret on creation and with ``?rotate_token=true``, once."""
    svc = service(state)
    try:
        record, created, credentials = await svc.put_camera(camera_id_of(camera_id), patch, rotate_token)
    except FrameRefused as error:
        raise _refused(error) from None
    return JSONResponse(_camera_body(svc, camera_id, record.patch, credentials), status_code=201 if created else 200)


@cameras.get("/admin/cameras/{camera_id}", dependencies=[Depends(admin)], responses=ADMIN_CAMERA_RESPONSES)
async def get_camera(camera_id: str, state: State) -> dict[str, Any]:
    """The camera's whole settings, defaults filled in; never its credentials."""
    svc = service(state)
    record = await asyncio.to_thread(svc.store.get_camera, camera_id_of(camera_id))
    if record is None:
        raise ApiError(404, f"no camera {camera_id!r}")
    return _camera_body(svc, camera_id, record.patch)


@cameras.delete(
    "/admin/cameras/{camera_id}",
    dependencies=[Depends(admin)],
    status_code=204,
    response_class=Response,
    responses=ADMIN_CAMERA_RESPONSES,
)
async def delete_camera(camera_id: str, state: State) -> Response:
    """The camera, its events and its pending notifications."""
    if not await asyncio.to_thread(service(state).store.delete_camera, camera_id_of(camera_id)):
        raise ApiError(404, f"no camera {camera_id!r}")
    return Response(status_code=204)


@cameras.get("/admin/deliveries", dependencies=[Depends(admin)], responses=ADMIN_CAMERA_RESPONSES)
async def deliveries(
    state: State,
    delivery_state: Annotated[Literal["pending", "sent", "dead"], Query(alias="state")] = "dead",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Deliveries (webhook or MQTT: ``channel``) by state: ``dead`` ones gave up after ``[webhooks] give_up_after_s``."""
    return {"deliveries": await asyncio.to_thread(service(state).store.deliveries, delivery_state, limit)}


# ---- a camera's frames and events ------------------------------------------------------------------------------


@cameras.post(
    "/v1/cameras/{camera_id}/frames",
    response_model=FrameOutcome,
    responses=CAMERA_RESPONSES
    | {
        409: {"description": "a frame older than the late tolerance"},
        413: {"description": "body over the size limit"},
        415: {"description": "unsupported Content-Type"},
        431: {"description": "too many or too large request headers"},
        503: {"description": "no fleet could answer"},
    },
)
async def camera_frame(
    camera_id: str, request: Request, state: State, token: Annotated[str | None, Depends(camera_token)]
) -> FrameOutcome:
    """One frame of this camera: the gate, the fleet where the frame changed or the answer is in doubt, the
    behaviours' events. ``captured_at`` (RFC 3339; default: arrival) goes in the query for raw bodies and in a form
    field for multipart ones."""
    svc = service(state)
    frame = await read_frame(request, state.limits, extra_fields=("captured_at",))
    if frame.questions or frame.behaviors:
        raise ApiError(400, "a camera's frame asks its camera's behaviours: send no question or behavior fields")
    image, raw = frame.image, frame.fields.get("captured_at")
    captured_at = parse_time(raw, "captured_at") if raw is not None else None

    async def infer(frame: Frame, asked: list[str]) -> Scored:
        routed = await ask_fleet(state, frame, asked, scores_only=True)
        return Scored(routed.scores, routed.backend, routed.attempts)

    try:
        return await svc.process(camera_id, frame_of(state, image), captured_at, infer, token)
    except FrameRefused as error:
        raise _refused(error) from None


def _cursor(value: str | None) -> tuple[float, str] | None:
    if value is None:
        return None
    at, _, event_id = value.partition("_")
    try:
        return float(at), event_id
    except ValueError:
        raise ApiError(400, f"cursor {value[:80]!r} is not one this API gave") from None


@cameras.get("/v1/cameras/{camera_id}/events", dependencies=[Depends(camera_or_admin)], responses=CAMERA_RESPONSES)
async def list_events(
    camera_id: str,
    state: State,
    since: str | None = None,
    behavior: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Events newest first; ``next_cursor`` pages on, null on the last page."""
    store = service(state).store
    since_at = parse_time(since, "since") if since is not None else None
    found, following = await asyncio.to_thread(
        store.list_events, camera_id, since=since_at, behavior=behavior, limit=limit, cursor=_cursor(cursor)
    )
    return {
        "events": [event.model_dump() for event in found],
        "next_cursor": None if following is None else f"{following[0]!r}_{following[1]}",
    }


@cameras.get(
    "/v1/cameras/{camera_id}/events/stream",
    dependencies=[Depends(camera_or_admin)],
    responses=CAMERA_RESPONSES | {200: {"content": {"text/event-stream": {}}}},
)
async def event_stream(
    camera_id: str,
    request: Request,
    state: State,
    last: Annotated[str | None, Header(alias="Last-Event-ID", description="resume after this change number")] = None,
) -> StreamingResponse:
    """Server-Sent Events: ``started``, ``updated`` (the peak rose, or the event reopened inside its cooldown) and
    ``ended``, each with its change number as ``id``; ``Last-Event-ID`` resumes after one."""
    store = service(state).store
    if last is not None and not last.isdigit():
        raise ApiError(400, f"Last-Event-ID {last[:32]!r} is not a change number")
    seq = int(last) if last is not None else await asyncio.to_thread(store.last_change, camera_id)

    async def events() -> Any:
        nonlocal seq
        quiet = 0.0
        yield ": stream open\n\n"
        while not await request.is_disconnected():
            changes = await asyncio.to_thread(store.changes_after, camera_id, seq)
            for number, kind, body in changes:
                seq = number
                yield f"id: {number}\nevent: {kind}\ndata: {json.dumps(json.loads(body), separators=(',', ':'))}\n\n"
            quiet = 0.0 if changes else quiet + STREAM_POLL_S
            if quiet >= STREAM_HEARTBEAT_S:
                quiet = 0.0
                yield ": heartbeat\n\n"
            await asyncio.sleep(STREAM_POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@cameras.get(
    "/v1/cameras/{camera_id}/events/{event_id}/keyframe",
    dependencies=[Depends(camera_or_admin)],
    response_class=Response,
    responses=CAMERA_RESPONSES | {200: {"content": {"image/jpeg": {}}}},
)
async def keyframe(camera_id: str, event_id: str, state: State) -> Response:
    """The event's key frame: the frame of its peak score, a JPEG at most 320 px wide."""
    data = await asyncio.to_thread(service(state).store.keyframe, camera_id, event_id)
    if data is None:
        raise ApiError(404, f"no event {event_id[:64]!r} of camera {camera_id}")
    return Response(data, media_type="image/jpeg")
