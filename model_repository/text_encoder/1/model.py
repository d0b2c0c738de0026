"""Triton Python backend for the BLIP text encoder: lifecycle only; the logic is blip_serving.stub."""

import triton_python_backend_utils as pb_utils

from blip_serving.stub.triton_adapter import ServedModel


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        self.served = ServedModel.from_args("text_encoder", args, pb_utils)

    def execute(self, requests: list) -> list:
        return self.served.execute(requests)
