"""Reading a frame request: the body within its limit, multipart or raw, and the questions it asks; and sending
the frame to a fleet, checked and resized here (``[api] send = "pixels"``) or as the encoded file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from blip_api.access import note_answer
from blip_api.errors import ApiError
from blip_api.settings import Limits
from blip_api.state import ApiState
from blip_client.errors import InvalidRequestError, NoBackendAvailableError
from blip_client.router_backend import RoutedAnswer
from blip_contract import reaches
from blip_images.frame import Frame

RAW_TYPES = ("image/", "application/octet-stream")
MAX_FIELD_BYTES_PER_CHAR = 4  # UTF-8: a question field's bytes for its characters


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


@dataclass(frozen=True)
class FrameRequest:
    """A frame request as read: the image, the questions and behaviors asked, and the route's own fields."""

    image: bytes
    questions: list[str]
    behaviors: list[str]
    fields: dict[str, str]


async def read_frame(request: Request, limits: Limits, extra_fields: tuple[str, ...] = ()) -> FrameRequest:
    """The image, the question and behavior lists and ``extra_fields`` (each at most once), from a multipart or a
    raw body. The fields are query parameters with either body, and form fields too in a multipart one."""
    known = ("question", "behavior", *extra_fields)
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
        unknown = sorted(set(form) - {"image", *known})
        if unknown:
            raise ApiError(400, f"unknown multipart field(s) {unknown}; send 'image' and {', '.join(map(repr, known))}")
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "multipart body has no 'image' file field")
        image = await upload.read()
        # The query's fields come first, then the form's: OpenAPI allows both with a multipart body.
        given = {name: [*request.query_params.getlist(name), *map(str, form.getlist(name))] for name in known}
    elif content_type.startswith(RAW_TYPES):
        image = body
        given = {name: request.query_params.getlist(name) for name in known}
    else:
        raise ApiError(
            415,
            f"Content-Type {content_type or '(none)'} is not accepted: use multipart/form-data, image/* or application/octet-stream",
        )
    # A query parameter the route does not declare was refused before this (app.known_query_parameters).
    questions, behaviors = given["question"], given["behavior"]
    values = {name: given[name] for name in extra_fields}
    if not image:
        raise ApiError(400, "the image is empty")
    if len(image) > limits.max_image_bytes:
        raise ApiError(413, f"image is {len(image)} bytes; the limit is {limits.max_image_bytes}")
    repeated = sorted(name for name, given in values.items() if len(given) > 1)
    if repeated:
        raise ApiError(400, f"{', '.join(repeated)} given more than once")
    return FrameRequest(image, questions, behaviors, {name: given[0] for name, given in values.items() if given})


def frame_of(state: ApiState, data: bytes) -> Frame:
    """A request's frame, held to this tier's byte cap (a fleet's own caps apply again when it is resized for it)."""
    return Frame(data, max_bytes=state.limits.max_image_bytes)


async def ask_fleet(state: ApiState, frame: Frame, questions: Sequence[str], *, scores_only: bool) -> RoutedAnswer:
    """The fleet's answer for one frame. With ``send = "pixels"`` the router's client decodes, checks and resizes the
    frame here for the fleet it chose, at that fleet's own scale (a fast fleet's JPEG is decoded at a reduced DCT
    scale, never at full scale), before that fleet is called: a bad frame gets the fleet's own 400 and costs no
    fleet anything. With ``send = "image"`` the encoded file goes as it came and the fleet decodes it. 400 for the
    caller's mistakes, 503 when no fleet could answer (a bad frame too, when no fleet is up to be chosen)."""
    payload: Frame | bytes = frame if state.limits.send == "pixels" else frame.data
    try:
        routed = await state.router.ask(payload, list(questions), scores_only=scores_only)
    except InvalidRequestError as error:
        raise ApiError(400, str(error)) from error
    except NoBackendAvailableError as error:
        raise ApiError(503, str(error), {"Retry-After": "1"}) from error
    note_answer(routed)
    behavior_of = {question: name for name, question in state.settings.behaviors.items()}
    behaviors = [behavior_of.get(q) for q in questions]
    for behavior, score in zip(behaviors, routed.scores, strict=True):
        if behavior is not None:
            state.behaviors.observe(behavior, score, reaches(score, state.settings.alert_threshold))
    if state.canary is not None:  # shadow traffic: a task of its own, after the caller's answer is ready
        state.canary.mirror(payload, list(questions), behaviors, routed)
    return routed
