"""Triton Python backend for blip_vqa in the colocated layout: lifecycle only; the logic is blip_serving.stub.

In the ensemble layout this folder's config is Triton's ensemble and this file is not used.
"""

import triton_python_backend_utils as pb_utils

from blip_serving.stub.triton_adapter import ServedModel


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        self.served = ServedModel.from_args("blip_vqa", args, pb_utils)

    def execute(self, requests: list) -> list:
        return self.served.execute(requests)
