"""What the real server exposes equals what every target's config declares; a bad artifact never serves."""

from __future__ import annotations

import shutil

import pytest
import tritonclient.http as triton_http

from blip_bench.bench import BEHAVIOR_QUESTIONS, SAMPLE
from blip_bench.contention import idle_cpu_percent
from blip_client.client import BlipVqaClient
from blip_contract import PUBLIC_INPUTS, PUBLIC_OUTPUTS
from blip_contract.pixels import PIXEL_MODEL, PIXELS, pixel_inputs
from blip_serving.deployment import Deployment
from blip_serving.errors import TritonProcessError
from blip_serving.manifest import read_manifest
from blip_serving.model_config import repository_configs
from blip_serving.spec import PUBLIC_MODEL
from blip_serving.targets import TARGET_NAMES
from blip_serving.triton.process import TritonServer


def _metadata(client, name: str) -> dict[str, list]:
    served = client.get_model_metadata(name)
    return {
        kind: [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in served[kind]]
        for kind in ("inputs", "outputs")
    }


def test_an_idle_server_burns_no_cpu_after_serving(triton) -> None:
    """Stubs' OpenMP workers sleep between requests: a spinning one burned a core for the server's whole life and
    slowed every other process on the machine (a CI run's perf sweep: 2 frames/s instead of 80)."""
    with BlipVqaClient(triton.http_url) as client:
        client.infer(SAMPLE.read_bytes(), BEHAVIOR_QUESTIONS, scores_only=True)
    assert idle_cpu_percent(triton.process.pid, seconds=2.0) < 25, "percent of one core, with nothing in flight"


def test_blip_vqa_metadata_is_the_wire_contract_in_every_layout(triton, tiny_build) -> None:
    """What callers see is the contract, whichever layout serves it: blip_vqa and blip_vqa_pixels, the same outputs.
    One difference a caller can see: colocated blip_vqa is the Python model itself, and its metadata also lists the
    optional PIXELS that its pixel ensemble feeds (a request with IMAGE and QUESTIONS is answered alike)."""
    spec = read_manifest(tiny_build.target_dir()).spec
    client = triton_http.InferenceServerClient(triton.http_url)
    try:
        # Frames batch: every tensor leads with the batch dimension (-1), one frame a request.
        outputs = [(t.name, t.dtype, [-1, *t.dims]) for t in PUBLIC_OUTPUTS]
        contract = [(t.name, t.dtype, [-1, *t.dims]) for t in PUBLIC_INPUTS]
        if triton.layout.name == "colocated":
            contract.insert(1, (PIXELS, "UINT8", [-1, *spec.pixel_shape]))
        assert _metadata(client, PUBLIC_MODEL) == {"inputs": contract, "outputs": outputs}
        pixel_form = [(t.name, t.dtype, [-1, *t.dims]) for t in pixel_inputs(spec.pixel_shape)]
        assert _metadata(client, PIXEL_MODEL) == {"inputs": pixel_form, "outputs": outputs}
        served = {entry["name"] for entry in client.get_model_repository_index() if entry.get("state") == "READY"}
        assert served == set(triton.layout.served_models)
    finally:
        client.close()


def test_the_served_metadata_equals_the_gpu_and_neuron_configs(triton, tiny_build) -> None:
    spec = read_manifest(tiny_build.target_dir()).spec
    client = triton_http.InferenceServerClient(triton.http_url)
    try:
        for name in triton.layout.served_models:
            wire = _metadata(client, name)
            for target in TARGET_NAMES:
                config = repository_configs(spec, target, "x", Deployment(layout=triton.layout.name))[name]
                # Metadata shows a batching model's shapes with the batch dimension (-1) first.
                batch = [-1] if config.max_batch_size else []
                declared = {
                    "inputs": [(t.name, _wire_dtype(t.data_type), batch + list(t.dims)) for t in config.input],
                    "outputs": [(t.name, _wire_dtype(t.data_type), batch + list(t.dims)) for t in config.output],
                }
                assert declared == wire, f"{target}/{name}"
    finally:
        client.close()


def _wire_dtype(data_type: int) -> str:
    from tritonclient.grpc import model_config_pb2 as pb

    name = pb.DataType.Name(data_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


@pytest.mark.parametrize("component", ["text_decoder"])
def test_the_server_refuses_to_start_on_a_truncated_artifact(tiny_build, tmp_path, component) -> None:
    shutil.copytree(tiny_build.artifacts / "cpu", tmp_path / "artifacts" / "cpu")
    shutil.copytree(tiny_build.repository, tmp_path / "model_repository")
    artifact = tmp_path / "artifacts" / "cpu" / tiny_build.target_dir().name / f"{component}.pt"
    artifact.write_bytes(artifact.read_bytes()[:1000])
    server = TritonServer(tmp_path / "model_repository", "cpu")
    with pytest.raises(TritonProcessError) as failure:
        server.start(timeout_s=120)
    server.stop()
    assert f"{component}.pt has sha256" in str(failure.value) and "the manifest says" in str(failure.value)
