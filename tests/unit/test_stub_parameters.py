"""blip_serving.stub_parameters: one record from the config generator to the stub, every field with its type."""

from __future__ import annotations

import typing

import pytest

from blip_serving.deployment import Deployment
from blip_serving.errors import ArtifactError
from blip_serving.model_config import parse, render, repository_configs
from blip_serving.placement import load_catalog, model_spec
from blip_serving.stub_parameters import StubParameters
from blip_serving.targets import TARGET_NAMES

SPEC = model_spec(load_catalog().model)  # blip-vqa-base's shapes
EVERY_FIELD = StubParameters(
    target="neuron",
    artifact_dir="../artifacts/neuron",
    intra_op_threads=3,
    stub_processes=4,
    fast_resize=True,
    host_outputs=True,
    FORCE_CPU_ONLY_INPUT_TENSORS=False,
    neuron_core_start_index=0,
    neuron_core_end_index=5,
)


def test_every_field_survives_the_round_trip_through_config_pbtxt_with_its_type() -> None:
    assert all(getattr(EVERY_FIELD, name) is not None for name in StubParameters.model_fields), "every field set"
    config = parse(render(repository_configs(SPEC, "cpu", "x")["image_encoder"]))
    config.parameters.clear()
    for key, value in EVERY_FIELD.to_config().items():
        config.parameters[key].string_value = value
    text = render(config)
    assert 'key: "fast_resize"' in text and 'string_value: "yes"' in text
    # What the stub reads: the parsed config's parameters as Triton hands them to ``initialize`` (JSON).
    read = StubParameters.from_config({k: {"string_value": v.string_value} for k, v in parse(text).parameters.items()})
    assert read == EVERY_FIELD
    for name, field in StubParameters.model_fields.items():
        kinds = typing.get_args(field.annotation) or (field.annotation,)
        value = getattr(read, name)
        assert type(value) in {typing.get_args(k)[0] if typing.get_origin(k) is typing.Annotated else k for k in kinds}


def test_unset_entries_are_left_out_and_read_back_as_defaults() -> None:
    plain = StubParameters(target="cpu", artifact_dir="a")
    assert plain.to_config() == {
        "target": "cpu",
        "artifact_dir": "a",
        "intra_op_threads": "0",
        "stub_processes": "1",
        "fast_resize": "no",
        "host_outputs": "no",
    }
    assert StubParameters.from_config(plain.to_config()) == plain


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"target": "cpu", "artifact_dir": "a", "fast_resise": "yes"},
            "fast_resise is not a setting (did you mean fast_resize?)",
        ),
        (
            {"target": "cpu", "artifact_dir": "a", "fast_resize": "maybe"},
            "fast_resize: Input should be a valid boolean",
        ),
        (
            {"target": "cpu", "artifact_dir": "a", "stub_processes": "0"},
            "stub_processes: Input should be greater than 0",
        ),
        ({"artifact_dir": "a"}, "target: Field required"),
    ],
)
def test_a_bad_entry_is_refused_in_one_line(parameters, message) -> None:
    with pytest.raises(ArtifactError, match=r"^config\.pbtxt parameters: ") as raised:
        StubParameters.from_config(parameters)
    assert message in str(raised.value)


@pytest.mark.parametrize("target", TARGET_NAMES)
@pytest.mark.parametrize("layout", ["ensemble", "colocated"])
def test_every_generated_config_reads_back_as_a_record(target, layout) -> None:
    deployment = Deployment(layout=layout, fast_resize=True, intra_op_threads=2)
    for config in repository_configs(SPEC, target, "x", deployment).values():
        if config.backend != "python":
            continue
        read = StubParameters.from_config({k: v.string_value for k, v in config.parameters.items()})
        assert (read.target, read.fast_resize, read.intra_op_threads) == (target, True, 2)
        assert (read.neuron_core_start_index is not None) == (target == "neuron")
