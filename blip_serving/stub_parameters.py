"""``StubParameters``: every ``parameters`` entry of a stub model's config.pbtxt, as one typed record.

One writer (``blip_serving.model_config``, with the target's own entries from ``Target.config_parameters``) and one
reader (the stub's ``initialize``, ``stub.triton_adapter``). config.pbtxt holds strings only, so the record has one
typed round trip: ``to_config`` writes booleans as ``yes``/``no`` (what Triton's own
``FORCE_CPU_ONLY_INPUT_TENSORS`` reads) and integers in decimal; ``from_config`` reads them back with their types,
and refuses a key it does not know.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from blip_contract.records import NonNegativeInteger, PositiveInteger, Strict, one_line
from blip_serving.errors import ArtifactError


class StubParameters(Strict):
    """What a stub reads of its config at load: where its artifacts are, how it shares the host, target entries."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    target: str = Field(description="The target the artifacts were built for; the stub refuses another.")
    artifact_dir: str = Field(description="The artifacts, relative to the model repository.")
    intra_op_threads: NonNegativeInteger = Field(0, description="torch threads per instance; 0: the host's share.")
    stub_processes: PositiveInteger = Field(1, description="Stub processes of the layout: a stub's core share.")
    fast_resize: bool = Field(False, description="Decode JPEGs at a reduced DCT scale, reduce before resizing.")
    host_outputs: bool = Field(False, description="Copy outputs to host memory before they go back to Triton.")
    # Triton's python backend reads this one itself: inputs in host memory (yes), or where the producer left them.
    force_cpu_only_input_tensors: bool | None = Field(None, alias="FORCE_CPU_ONLY_INPUT_TENSORS")
    neuron_core_start_index: NonNegativeInteger | None = Field(None, description="First NeuronCore of the block.")
    neuron_core_end_index: NonNegativeInteger | None = Field(None, description="Last NeuronCore of the block.")

    def to_config(self) -> dict[str, str]:
        """The config.pbtxt ``parameters``: strings by their config keys; unset entries are left out."""
        written = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            written[field.alias or name] = ("yes" if value else "no") if isinstance(value, bool) else str(value)
        return written

    @classmethod
    def from_config(cls, parameters: Mapping[str, Any]) -> StubParameters:
        """From a model config's ``parameters`` (``{"key": {"string_value": "..."}}``, as Triton hands them, or
        plain strings); a bad or unknown entry is ``ArtifactError`` naming it."""
        strings = {
            key: value.get("string_value") if isinstance(value, Mapping) else value for key, value in parameters.items()
        }
        for key, value in strings.items():
            kind = _KINDS.get(key)
            if kind is bool and value in ("yes", "no"):
                strings[key] = value == "yes"
            elif kind is int and isinstance(value, str) and value.isdigit():
                strings[key] = int(value)
        try:
            return cls.model_validate(strings)
        except ValidationError as error:
            raise ArtifactError(
                one_line(error, "config.pbtxt parameters", cls) + ": regenerate with make build-artifacts"
            ) from None


def _kind(annotation: Any) -> type | None:
    """bool or int where a field holds one (alone or beside None): how its config string reads back."""
    args = typing.get_args(annotation) or (annotation,)
    for kind in (bool, int):
        if any(
            arg is kind or (typing.get_origin(arg) is typing.Annotated and typing.get_args(arg)[0] is kind)
            for arg in args
        ):
            return kind
    return None


# Config key -> the type its string reads back as.
_KINDS = {field.alias or name: _kind(field.annotation) for name, field in StubParameters.model_fields.items()}
