"""The one stub of ``triton_python_backend_utils``, so model.py runs in-process without a server.

It records what a model hands back (tensors, errors and their codes, log lines) with the same call shapes the
real Python backend uses; the integration tier checks the same behaviour on the real server.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def to_dlpack(self) -> Any:
        if self._array.dtype == np.object_:
            raise RuntimeError("BYTES tensors cannot be exported through DLPack")  # as in the Python backend
        import torch

        return torch.utils.dlpack.to_dlpack(torch.from_numpy(np.ascontiguousarray(self._array)))

    @classmethod
    def from_dlpack(cls, name: str, capsule: Any) -> Tensor:
        import torch

        return cls(name, torch.from_dlpack(capsule).numpy())


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS = range(7)

    def __init__(self, message: str, code: int = UNKNOWN) -> None:
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class InferenceRequest:
    def __init__(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any] | None = None) -> None:
        self.inputs = {name: Tensor(name, value) for name, value in inputs.items()}
        self._parameters = json.dumps(parameters or {})

    def parameters(self) -> str:
        """JSON text, as the Python backend returns it."""
        return self._parameters


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


@pytest.fixture(autouse=True)
def _fresh_log() -> None:
    """Each test sees only the log lines written while it ran, not an earlier test's."""
    Logger.lines.clear()


def load_model(repository: Path, name: str, target: str = "cpu", instance: int = 0, config: str | None = None) -> Any:
    """Import ``<name>/1/model.py`` and call ``initialize`` with the args the Python backend passes.

    ``config`` is the config name Triton is started with (``--model-config-name``; default the target's)."""
    from google.protobuf import json_format

    from blip_serving.model_config import parse

    path = repository / name / "1" / "model.py"
    module_spec = importlib.util.spec_from_file_location(f"model_{name}_{target}_{instance}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = parse((repository / name / "configs" / f"{config or target}.pbtxt").read_text())
    model = module.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True)),
            "model_repository": str(repository / name),
            "model_name": name,
            "model_instance_name": f"{name}_0_{instance}",
            "model_instance_kind": "CPU",
        }
    )
    return model
