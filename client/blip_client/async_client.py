"""An asyncio client for ``blip_vqa`` over HTTP (tritonclient.http.aio), the one the router and API tier use.

Same wire format and typed errors as the blocking ``BlipVqaClient``; a deadline per call is enforced here,
since Triton's own ``timeout`` parameter only bounds queueing on the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp
import tritonclient.http.aio as triton_aio
from tritonclient.utils import InferenceServerException

from blip_client.errors import ServerTimeoutError, ServerUnavailableError
from blip_client.wire import VqaResult, build_inputs, classify, parse_result, request_parameters, requested_outputs
from blip_contract import PUBLIC_MODEL


class AsyncBlipVqaClient:
    """One pooled HTTP connection set to a Triton endpoint that serves ``blip_vqa``."""

    def __init__(self, url: str, *, model: str = PUBLIC_MODEL, connections: int = 64) -> None:
        self.url, self.model = url, model
        self._client: Any = triton_aio.InferenceServerClient(url, conn_limit=connections)
        self.closed = False

    async def infer(
        self,
        image: bytes,
        questions: Sequence[str | bytes],
        *,
        timeout_s: float,
        scores_only: bool = False,
        request_id: str | None = None,
    ) -> VqaResult:
        """Scores (and answers unless ``scores_only``) for one encoded image; raises a ``BlipVqaError`` on failure.
        ``request_id`` becomes Triton's request id (its logs and traces name it)."""
        inputs = build_inputs(triton_aio, image, questions)
        try:
            async with asyncio.timeout(timeout_s):
                result = await self._client.infer(
                    self.model,
                    inputs,
                    outputs=requested_outputs(triton_aio, scores_only),
                    parameters=request_parameters(scores_only),
                    request_id=request_id or "",
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
