"""``MODEL=s3://bucket/prefix``: the build reads its checkpoint from an S3-compatible server (moto's, started here
on a loopback port), builds a version from it, and refuses a prefix that holds nothing or a bucket that is not
there, in one line, writing no version."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from blip_serving.manifest import verify_artifact_files
from blip_serving.triton.process import free_port
from blip_serving.versions import VersionStore

BUCKET = "blip-checkpoints"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # answering
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3(s3_server, monkeypatch):
    """boto3 pointed at the loopback server the way a deployment points it at a store: the environment."""
    for name, value in {
        "AWS_ENDPOINT_URL_S3": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    if BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=BUCKET)
    return client


def upload(client, directory: Path, prefix: str) -> int:
    files = [path for path in directory.rglob("*") if path.is_file() and not path.name.startswith(".")]
    for path in files:
        client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(directory).as_posix()}")
    return len(files)


def test_a_build_from_s3_is_a_version_of_that_checkpoint(tiny_build, tmp_path, s3) -> None:
    from blip_build import build

    assert upload(s3, tiny_build.checkpoint, "fine-tuned/tiny-v7") >= 3
    repository = shutil.copytree(tiny_build.repository, tmp_path / "model_repository")
    uri = f"s3://{BUCKET}/fine-tuned/tiny-v7"
    manifest = build(uri, "cpu", artifacts=tmp_path / "artifacts", repository=repository)
    store = VersionStore(tmp_path / "artifacts" / "cpu")
    assert store.versions() == [1] and manifest.directory == store.path(1)
    assert manifest.record.checkpoint.source == uri
    downloaded = Path(manifest.record.checkpoint.path)
    assert downloaded == (tmp_path / "artifacts" / "checkpoints" / "s3" / BUCKET / "fine-tuned" / "tiny-v7").resolve()
    assert (downloaded / "config.json").read_bytes() == (tiny_build.checkpoint / "config.json").read_bytes()
    assert manifest.spec == VersionStore(tiny_build.artifacts / "cpu").manifest(1).spec
    for name in manifest.record.components:
        verify_artifact_files(manifest, name, "cpu")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (f"s3://{BUCKET}/nothing-here", f"s3://{BUCKET}/nothing-here holds no objects"),
        ("s3://no-such-bucket/tiny", "cannot read the checkpoint s3://no-such-bucket/tiny: "),
        (f"s3://{BUCKET}", "an S3 checkpoint is s3://<bucket>/<prefix>"),
    ],
)
def test_an_s3_checkpoint_that_cannot_be_read_is_refused_in_one_line(tiny_build, tmp_path, s3, uri, message) -> None:
    from blip_build import build

    with pytest.raises((OSError, ValueError)) as refused:
        build(uri, "cpu", artifacts=tmp_path / "artifacts", repository=tmp_path / "model_repository")
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert VersionStore(tmp_path / "artifacts" / "cpu").versions() == []
    assert not list((tmp_path / "artifacts").rglob(".download-*")), "no half download is left"
