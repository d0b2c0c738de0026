"""An asyncio client for ``blip_vqa`` over HTTP (tritonclient.http.aio), the one the router and API tier use.

Same wire format and typed errors as the blocking ``BlipVqaClient``; a deadline per call is enforced here,
since Triton's own ``timeout`` parameter only bounds queueing on the server. A call carries the encoded frame (to
``blip_vqa``) or a ``PixelSource`` (to ``blip_vqa_pixels``): then this client resizes it with the settings the
fleet itself publishes, read from its ``blip_vqa_pixels`` config (``read_pixel_settings``, which every health
probe repeats, so a fleet redeployed with another checkpoint is followed within one probe interval).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp
import tritonclient.http.aio as triton_aio
from tritonclient.utils import InferenceServerException

from blip_client.errors import InvalidRequestError, ServerError, ServerTimeoutError, ServerUnavailableError
from blip_client.wire import (
    FrameInput,
    VqaResult,
    build_inputs,
    build_pixel_inputs,
    classify,
    parse_result,
    request_parameters,
    requested_outputs,
    trace_headers,
)
from blip_contract import PUBLIC_MODEL
from blip_contract.errors import InvalidInputError
from blip_contract.pixels import PIXEL_MODEL, PIXEL_SETTINGS, FleetSettingsError, PixelSettings


class AsyncBlipVqaClient:
    """One pooled HTTP connection set to a Triton endpoint that serves ``blip_vqa``."""

    def __init__(self, url: str, *, model: str = PUBLIC_MODEL, connections: int = 64) -> None:
        self.url, self.model = url, model
        self._client: Any = triton_aio.InferenceServerClient(url, conn_limit=connections)
        self.closed = False
        self.pixel_settings: PixelSettings | None = None  # the fleet's, once read

    async def read_pixel_settings(self, timeout_s: float) -> PixelSettings:
        """The fleet's ``PixelSettings`` from its ``blip_vqa_pixels`` config, kept for the calls that follow. A fleet
        that answers without them is ``ServerError`` in one line naming it (it cannot take pixels)."""
        try:
            async with asyncio.timeout(timeout_s):
                config = await self._client.get_model_config(PIXEL_MODEL)
        except InferenceServerException as error:
            raise ServerError(f"fleet {self.url}: cannot read {PIXEL_MODEL}'s config: {error.message()}") from error
        except TimeoutError as error:
            raise ServerTimeoutError(f"{self.url}: no config within {timeout_s:g}s") from error
        except (aiohttp.ClientError, OSError) as error:
            raise ServerUnavailableError(f"{self.url}: {type(error).__name__}: {error}") from error
        value = (config.get("parameters") or {}).get(PIXEL_SETTINGS, {}).get("string_value")
        try:
            self.pixel_settings = PixelSettings.from_parameter(value, self.url)
        except FleetSettingsError as error:
            raise ServerError(str(error)) from None
        return self.pixel_settings

    async def infer(
        self,
        image: FrameInput,
        questions: Sequence[str | bytes],
        *,
        timeout_s: float,
        scores_only: bool = False,
        request_id: str | None = None,
    ) -> VqaResult:
        """Scores (and answers unless ``scores_only``) for one frame; raises a ``BlipVqaError`` on failure.
        ``request_id`` becomes Triton's request id (its logs and traces name it). The current OpenTelemetry
        context goes as a W3C ``traceparent`` header (nothing where none is active), so that a Triton tracing in
        its OpenTelemetry mode makes its spans children of the caller's."""
        model = self.model
        if isinstance(image, bytes | bytearray):
            inputs = build_inputs(triton_aio, bytes(image), questions)
        else:
            settings = self.pixel_settings or await self.read_pixel_settings(timeout_s)
            try:  # a resize of a large frame takes milliseconds: off the event loop
                pixels = await asyncio.to_thread(image.pixels, settings)
            except InvalidInputError as error:
                raise InvalidRequestError(str(error)) from error
            inputs, model = build_pixel_inputs(triton_aio, pixels, questions), PIXEL_MODEL
        try:
            async with asyncio.timeout(timeout_s):
                result = await self._client.infer(
                    model,
                    inputs,
                    outputs=requested_outputs(triton_aio, scores_only),
                    parameters=request_parameters(scores_only),
                    request_id=request_id or "",
                    headers=trace_headers(),
                )
        except InferenceServerException as error:
            raise classify(error) from error
        except TimeoutError as error:
            raise ServerTimeoutError(f"{self.url}: no answer within {timeout_s:g}s") from error
        except (aiohttp.ClientError, OSError) as error:
            raise ServerUnavailableError(f"{self.url}: {type(error).__name__}: {error}") from error
        return parse_result(result, len(questions), scores_only)

    async def close(self) -> None:
        self.closed = True
        await self._client.close()
