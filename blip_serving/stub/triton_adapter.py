"""Inside the Triton stub: the glue between Triton's Python backend and a component model.

``ServedModel.from_args`` parses ``initialize``'s arguments, asks the target to place the instance (on neuron
that reserves its NeuronCores before any artifact loads), checks the manifest against the config and loads the
model. ``execute`` isolates errors per request: a bad request gets its own INVALID_ARG error while the rest of the
batch succeeds, and an unexpected failure is logged and answered with INTERNAL instead of killing the stub.
The requests of one execute are prepared (decoded, resized, tokenized) in parallel threads, as many as this stub's
share of the host's cores among all the layout's stub processes (Pillow releases the GIL in decode and resize;
measured on 2 cores: with 3 ensemble stubs a pool cost CPU and frames, so they get none). Tensors between the
steps cross as DLPack (no numpy round trip; on GPU they stay on the device).
"""

from __future__ import annotations

import ctypes
import functools
import json
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.dlpack import to_dlpack

from blip_contract.env import env_default
from blip_serving.errors import InvalidInputError
from blip_serving.instance_names import instance_index
from blip_serving.manifest import check_config_matches, read_manifest
from blip_serving.resources import core_share, threads_per_instance
from blip_serving.stub.models import SERVING_MODELS, ServingOptions
from blip_serving.stub_parameters import StubParameters
from blip_serving.targets import get_target

# When freed memory goes back to the system: "always" (after the artifacts load, and after executes at most once
# per TRIM_INTERVAL_S: about 120 MiB less resident for random-base colocated), "execute" (after every execute, the
# rule before 2026-12-03, for a host short of memory), "load" (after the artifacts load only), "0" never. Once
# frames came as pixels, a trim after every execute cost random-host's colocated stub about 5 CPU-ms a frame
# (10.4-11.3 against 5.7-6.4 once a second, docs/performance.md): the next execute faulted the freed buffers in again.
TRIM_SETTING = "MALLOC_TRIM"  # BLIP_MALLOC_TRIM
TRIM_INTERVAL_S = 1.0
_trimmed_at = float("-inf")


def request_id(request: Any) -> str:
    """Triton's id of a request (the API tier's X-Request-ID, sent by the router), for the stub's log lines."""
    try:
        return request.request_id() or "-"
    except Exception:  # a request object without one (Triton's API differs between versions): the line still logs
        return "-"


def release_freed_memory(after_execute: bool = False) -> None:
    """Hand memory that glibc keeps after frees back to the system (``malloc_trim``); a no-op off glibc.

    Loading artifacts and running a frame free large temporary buffers; glibc keeps them in its heap, where they
    count as this stub's resident memory until reused.
    """
    global _trimmed_at
    mode = env_default(TRIM_SETTING, "always")
    if mode == "0" or (after_execute and mode not in ("always", "execute")):
        return
    now = time.monotonic()
    if after_execute and mode == "always" and now - _trimmed_at < TRIM_INTERVAL_S:
        return
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
        _trimmed_at = now


@functools.cache
def _libc() -> Any:
    """glibc, loaded once (this runs after every execute); None elsewhere."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


class ServedModel:
    """The Triton side of one served model (a component, or colocated ``blip_vqa``): parses ``initialize`` args,
    isolates errors per request."""

    def __init__(self, model: Any, pb_utils: Any, host_outputs: bool = False, threads: int = 1) -> None:
        self.model = model
        self.host_outputs = host_outputs
        self.pb_utils = pb_utils
        self.logger = pb_utils.Logger
        self.inputs = model.spec.model_tensors(model.name)[0]
        # Decode, resize and tokenize of an execute's requests side by side (Pillow releases the GIL).
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix=f"{model.name}-prepare") if threads > 1 else None

    @classmethod
    def from_args(cls, component: str, args: Mapping[str, str], pb_utils: Any) -> ServedModel:
        config = json.loads(args["model_config"])
        parameters = StubParameters.from_config(config.get("parameters", {}))
        # The model folder may be reached through the server's repository view (a symlink): resolve to the real one.
        artifact_dir = Path(args["model_repository"]).resolve().parent / parameters.artifact_dir
        instances = sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) or 1
        manifest = read_manifest(artifact_dir.resolve())
        target = get_target(parameters.target).from_description(manifest.record.target)
        placed = target.prepare_instance(
            parameters,
            instances,
            instance_index(args.get("model_instance_name", f"{component}_0_0")),
            int(args.get("model_instance_device_id", "0") or 0),
        )
        target.check_build(manifest.record.versions)  # after placement: a check may import the target's SDK
        threads = threads_per_instance(parameters.intra_op_threads, instances)
        torch.set_num_threads(threads)
        check_config_matches(manifest, component, config)
        options = ServingOptions(fast_resize=parameters.fast_resize)
        model = SERVING_MODELS[component](manifest, target, placed.load_device, options)
        files = [path.name for name in model.components for _, path in manifest.artifact_files(name)]
        pb_utils.Logger.log_info(
            f"{component}: loaded {len(files)} artifact(s) ({', '.join(files[:3])}...) for {target.name} on "
            f"{placed.description}, "
            f"{threads} intra-op thread(s) (checkpoint {manifest.record.checkpoint.source})"
        )
        release_freed_memory()
        prepare_threads = core_share(parameters.stub_processes)
        return cls(model, pb_utils, host_outputs=parameters.host_outputs, threads=prepare_threads)

    def _error(self, message: str, code_name: str) -> Any:
        error_type = self.pb_utils.TritonError
        return self.pb_utils.InferenceResponse(
            output_tensors=[], error=error_type(message, getattr(error_type, code_name))
        )

    def _read_inputs(self, request: Any) -> dict[str, Any]:
        """BYTES as numpy objects; numeric tensors through DLPack, without a copy (on the GPU where they are)."""
        inputs: dict[str, Any] = {}
        for spec in self.inputs:
            tensor = self.pb_utils.get_input_tensor_by_name(request, spec.name)
            if tensor is None:
                if spec.optional:
                    continue  # one of two forms of the frame; the model checks that exactly one came
                raise InvalidInputError(f"input {spec.name} is missing")
            inputs[spec.name] = tensor.as_numpy() if spec.dtype == "BYTES" else torch.from_dlpack(tensor.to_dlpack())
        return inputs

    def _read_parameters(self, request: Any) -> dict[str, Any]:
        raw = request.parameters() if hasattr(request, "parameters") else "{}"
        try:
            parameters = json.loads(raw or "{}")
        except json.JSONDecodeError as error:
            raise InvalidInputError(f"request parameters are not valid JSON: {error}") from error
        return parameters if isinstance(parameters, dict) else {}

    def _tensor(self, name: str, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if self.host_outputs:
                value = value.cpu()
            return self.pb_utils.Tensor.from_dlpack(name, to_dlpack(value.contiguous()))
        return self.pb_utils.Tensor(name, np.ascontiguousarray(value))

    def _prepare(self, request: Any) -> tuple[Any, str | None]:
        """(prepared item, None), or (None, the INVALID_ARG message); other exceptions propagate."""
        inputs, parameters = request
        try:
            return self.model.prepare(inputs, parameters), None
        except InvalidInputError as error:
            return None, str(error)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        read: list[tuple[int, Any]] = []
        for index, request in enumerate(requests):  # Triton's request objects are read on this thread only
            try:
                read.append((index, (self._read_inputs(request), self._read_parameters(request))))
            except InvalidInputError as error:
                responses[index] = self._error(str(error), "INVALID_ARG")
            except Exception:
                self.logger.log_error(
                    f"{self.model.name}: reading request {request_id(request)} failed\n{traceback.format_exc()}"
                )
                responses[index] = self._error(f"{self.model.name}: internal error reading request", "INTERNAL")
        prepared: list[tuple[int, Any]] = []
        work = [raw for _, raw in read]
        futures = [self.pool.submit(self._prepare, raw) for raw in work] if self.pool and len(work) > 1 else None
        for position, (index, raw) in enumerate(read):
            try:
                item, invalid = futures[position].result() if futures else self._prepare(raw)
            except Exception:
                self.logger.log_error(
                    f"{self.model.name}: preparing request {request_id(requests[index])} failed\n"
                    f"{traceback.format_exc()}"
                )
                responses[index] = self._error(f"{self.model.name}: internal error preparing request", "INTERNAL")
                continue
            if invalid is not None:
                responses[index] = self._error(invalid, "INVALID_ARG")
            else:
                prepared.append((index, item))
        if prepared:
            try:
                outputs = self.model.run([item for _, item in prepared])
                if len(outputs) != len(prepared):
                    raise RuntimeError(f"{len(outputs)} outputs for {len(prepared)} requests")
                for (index, _), output in zip(prepared, outputs):
                    tensors = [self._tensor(name, value) for name, value in output.items()]
                    responses[index] = self.pb_utils.InferenceResponse(output_tensors=tensors)
            except Exception:
                ids = ", ".join(request_id(requests[index]) for index, _ in prepared)
                self.logger.log_error(
                    f"{self.model.name}: inference of requests {ids} failed\n{traceback.format_exc()}"
                )
                for index, _ in prepared:
                    responses[index] = self._error(f"{self.model.name}: internal error during inference", "INTERNAL")
        release_freed_memory(after_execute=True)
        return responses
