"""The one stub of ``triton_python_backend_utils``, so model.py runs in-process without a server.

It records what a model hands back (tensors, errors and their codes, log lines) with the same call shapes the
real Python backend uses; the integration tier checks the same behaviour on the real server.
"""

from __future__ import annotations

import sys
import types
from typing import Any, ClassVar

import numpy as np


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS = range(7)

    def __init__(self, message: str, code: int = UNKNOWN) -> None:
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class InferenceRequest:
    def __init__(self, inputs: dict[str, np.ndarray]) -> None:
        self.inputs = {name: Tensor(name, value) for name, value in inputs.items()}


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
        self.output_tensors, self.error = output_tensors, error

    def outputs(self) -> dict[str, np.ndarray]:
        return {t.name(): t.as_numpy() for t in self.output_tensors}


class Logger:
    lines: ClassVar[list[tuple[str, str]]] = []

    @classmethod
    def log_info(cls, message: str) -> None:
        cls.lines.append(("info", message))

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls.lines.append(("warn", message))

    @classmethod
    def log_error(cls, message: str) -> None:
        cls.lines.append(("error", message))


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Any:
    return request.inputs.get(name)


pb_utils = types.ModuleType("triton_python_backend_utils")
for _name, _value in dict(
    Tensor=Tensor,
    TritonError=TritonError,
    InferenceRequest=InferenceRequest,
    InferenceResponse=InferenceResponse,
    Logger=Logger,
    get_input_tensor_by_name=get_input_tensor_by_name,
).items():
    setattr(pb_utils, _name, _value)
sys.modules["triton_python_backend_utils"] = pb_utils
