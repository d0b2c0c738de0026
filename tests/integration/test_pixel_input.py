"""The pixel form through the real Triton server, in each layout: ``blip_vqa_pixels`` answers bit for bit as
``blip_vqa`` does on the same frame, the fleet publishes its own pixel settings, and bad pixels are 400s."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest
import tritonclient.http as http
from tritonclient.utils import InferenceServerException

from blip_bench.corpus import camera_frame
from blip_client.async_client import AsyncBlipVqaClient
from blip_client.errors import ServerError
from blip_client.probe import probe_async
from blip_contract import PUBLIC_MODEL
from blip_contract.pixels import PIXEL_MODEL
from blip_images.frame import Frame
from blip_serving.deployment import Deployment
from blip_serving.manifest import read_manifest
from blip_serving.model_config import parse, render, write_repository_configs
from blip_serving.triton.process import TritonServer
from tests.conftest import QUESTIONS, VALID_IMAGES

FRAMES = [(path.name, path.read_bytes()) for path in VALID_IMAGES] + [
    (f"camera-{w}x{h}", camera_frame(w, h)) for w, h in ((1920, 1080), (640, 360))
]


def both_forms(url: str, data: bytes, scores_only: bool):
    async def body():
        client = AsyncBlipVqaClient(url)
        try:
            encoded = await client.infer(data, QUESTIONS, timeout_s=30, scores_only=scores_only)
            frame = Frame(data, max_bytes=20 * 2**20)
            frame.picture()
            pixels = await client.infer(frame, QUESTIONS, timeout_s=30, scores_only=scores_only)
            return encoded, pixels, client.pixel_settings
        finally:
            await client.close()

    return asyncio.run(body())


@pytest.mark.parametrize(("name", "data"), FRAMES, ids=[name for name, _ in FRAMES])
def test_the_pixel_form_answers_bit_for_bit_as_the_encoded_form(triton, tiny_build, name, data) -> None:
    for scores_only in (True, False):
        encoded, pixels, settings = both_forms(triton.http_url, data, scores_only)
        assert pixels.scores == encoded.scores, f"{name}: scores differ"  # exact: the same uint8 pixels went in
        assert pixels.answers == encoded.answers
    assert settings == read_manifest(tiny_build.target_dir()).spec.pixel_settings(), "the fleet's own, from its config"


def raw_infer(triton, model: str, inputs: list) -> InferenceServerException:
    client = http.InferenceServerClient(triton.http_url)
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, inputs)
        return caught.value
    finally:
        client.close()


def pixels_input(shape, dtype="UINT8") -> http.InferInput:
    tensor = http.InferInput("PIXELS", list(shape), dtype)
    tensor.set_data_from_numpy(np.zeros(shape, dtype=np.uint8 if dtype == "UINT8" else np.float32))
    return tensor


def questions_input() -> http.InferInput:
    tensor = http.InferInput("QUESTIONS", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"Is the dog barking?"]], dtype=np.object_))
    return tensor


def test_bad_pixels_are_400s_that_name_the_input_and_the_fleet_keeps_serving(triton, tiny_build) -> None:
    spec = read_manifest(tiny_build.target_dir()).spec
    side = spec.image_height
    for shape, dtype in (((1, side // 2, side, 3), "UINT8"), ((1, side, side, 3), "FP32"), ((1, side, side), "UINT8")):
        error = raw_infer(triton, PIXEL_MODEL, [pixels_input(shape, dtype), questions_input()])
        assert error.status() == "400" and "PIXELS" in error.message(), (shape, dtype, error.message())
    assert len(both_forms(triton.http_url, FRAMES[0][1], True)[1].scores) == len(QUESTIONS)


def test_a_python_model_given_both_forms_or_neither_refuses_it_in_one_line(triton, tiny_build) -> None:
    """Only the colocated layout serves ``blip_vqa`` as a Python model with the two optional forms."""
    if triton.layout.name != "colocated":
        pytest.skip("blip_vqa is an ensemble here: its IMAGE is required and it has no PIXELS")
    spec = read_manifest(tiny_build.target_dir()).spec
    image = http.InferInput("IMAGE", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[FRAMES[0][1]]], dtype=np.object_))
    both = raw_infer(triton, PUBLIC_MODEL, [image, pixels_input((1, *spec.pixel_shape)), questions_input()])
    assert both.status() == "400" and "send exactly one of IMAGE" in both.message() and "got both" in both.message()
    neither = raw_infer(triton, PUBLIC_MODEL, [questions_input()])
    assert neither.status() == "400" and "got neither" in neither.message()


def test_a_fleet_without_pixel_settings_is_refused_at_connect_in_one_line(tiny_build, tmp_path) -> None:
    """A fleet whose ``blip_vqa_pixels`` carries no settings (one built before them, or edited by hand) answers,
    but the router's first probe fails it with one line naming the fleet, and it is never sent pixels."""
    repository = tmp_path / "model_repository"
    shutil.copytree(tiny_build.repository, repository, ignore=shutil.ignore_patterns("configs"))
    artifacts = tiny_build.target_dir()
    write_repository_configs(
        read_manifest(artifacts).spec, "cpu", repository, artifacts, Deployment(layout="colocated")
    )
    path = repository / PIXEL_MODEL / "configs" / "colocated-cpu.pbtxt"
    config = parse(path.read_text())
    del config.parameters["pixel_settings"]
    path.write_text(render(config))
    with TritonServer(repository, "cpu", layout="colocated") as server:

        async def body():
            client = AsyncBlipVqaClient(server.http_url)
            try:
                with pytest.raises(ServerError) as refused:
                    await client.read_pixel_settings(5)
                probed = await probe_async(client, 5)
                encoded = await client.infer(FRAMES[0][1], QUESTIONS, timeout_s=30, scores_only=True)
                return str(refused.value), probed, encoded
            finally:
                await client.close()

        message, probed, encoded = asyncio.run(body())
    assert message == (
        f"fleet {server.http_url}: blip_vqa_pixels has no pixel_settings parameter (a fleet built before pixel "
        "input: rebuild its repository with make build-artifacts)"
    )
    assert not probed.ok and "has no pixel_settings parameter" in probed.error and "\n" not in probed.error
    assert len(encoded.scores) == len(QUESTIONS), "the encoded form still answers: only the pixel path is refused"
