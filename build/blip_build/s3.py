"""Checkpoints from S3 (``MODEL=s3://bucket/prefix``): a company's fine-tuned checkpoint is private, and an
air-gapped cluster has no Hub, but it has a bucket (or an S3-compatible store).

Every object under the prefix is downloaded with boto3 into a staging directory, which replaces the cached copy only
once whole, so an interrupted download is never built from. Credentials and endpoint are boto3's own: the default
chain (environment, IRSA or EKS Pod Identity in a cluster, the instance profile), and ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` for an S3-compatible store, which botocore reads itself.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

SCHEME = "s3://"


def is_s3(model: str) -> bool:
    return model.startswith(SCHEME)


def bucket_and_prefix(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix/``); ``ValueError`` in one line otherwise."""
    bucket, _, prefix = uri.removeprefix(SCHEME).partition("/")
    prefix = prefix.strip("/")
    if not bucket or not prefix:
        raise ValueError(f"MODEL={uri!r}: an S3 checkpoint is s3://<bucket>/<prefix>, the folder save_pretrained wrote")
    return bucket, prefix + "/"


def download(uri: str, cache: Path) -> Path:
    """The checkpoint under ``uri`` as a local directory (``cache/<bucket>/<prefix>``); ``OSError`` in one line
    naming the URI when it cannot be read."""
    bucket, prefix = bucket_and_prefix(uri)
    destination = cache / bucket / prefix.rstrip("/")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=destination.parent))
    try:
        client = boto3.client("s3")
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [item["Key"] for page in pages for item in page.get("Contents", []) if not item["Key"].endswith("/")]
        if not keys:
            raise OSError(f"{uri} holds no objects: nothing to build (is the prefix the folder save_pretrained wrote?)")
        for key in keys:
            local = staging / key[len(prefix) :]
            local.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(local))
    except (BotoCoreError, ClientError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise OSError(f"cannot read the checkpoint {uri}: {error}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)
    return destination
