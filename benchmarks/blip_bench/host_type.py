"""Which host type a measurement ran on, so that ``make capacity`` sizes an overlay only from its own hardware.

The order: the ``--host-type`` flag; else EC2's instance metadata (IMDSv2: a session token, then
``/latest/meta-data/instance-type``), at the endpoint the AWS SDKs read from ``AWS_EC2_METADATA_SERVICE_ENDPOINT``
and skipped where ``AWS_EC2_METADATA_DISABLED=true``, as they do; else ``local``, a host type that no overlay runs.
In a pod, the metadata is the node's (EKS's default hop limit of 2 lets a pod reach it); a perf Job whose pod runs on
another node than the fleet passes the fleet's type as the flag.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Literal

from pydantic import Field

from blip_contract.records import Strict

ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
DISABLED_ENV = "AWS_EC2_METADATA_DISABLED"
DEFAULT_ENDPOINT = "http://169.254.169.254"
LOCAL = "local"
TOKEN_TTL_S = 60


class HostTypeFound(Strict):
    """The host type and where it was read: it goes into the perf summary beside the figures."""

    name: str = Field(min_length=1)
    source: Literal["flag", "ec2-metadata", "default"]


def ec2_instance_type(endpoint: str | None = None, timeout_s: float = 1.0) -> str | None:
    """The instance type from EC2's metadata service (IMDSv2), or None where there is none to ask."""
    if os.environ.get(DISABLED_ENV, "").lower() == "true":
        return None
    base = (endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")
    try:
        token_request = urllib.request.Request(
            f"{base}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
        )
        with urllib.request.urlopen(token_request, timeout=timeout_s) as response:
            token = response.read().decode()
        type_request = urllib.request.Request(
            f"{base}/latest/meta-data/instance-type", headers={"X-aws-ec2-metadata-token": token}
        )
        with urllib.request.urlopen(type_request, timeout=timeout_s) as response:
            name = response.read().decode().strip()
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return name or None


def host_type(flag: str | None, endpoint: str | None = None) -> HostTypeFound:
    if flag:
        return HostTypeFound(name=flag, source="flag")
    found = ec2_instance_type(endpoint)
    if found:
        return HostTypeFound(name=found, source="ec2-metadata")
    return HostTypeFound(name=LOCAL, source="default")
