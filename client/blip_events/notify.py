"""The notification policy: what a webhook request carries, how it is signed, when a failed one is tried again, and
which URLs may receive one.

- Signature in the style of Stripe's: ``Blip-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with
  the camera's secret, so a receiver checks both the body and its freshness.
- Backoff: full jitter over a doubling ceiling (the first retry within ``first_retry_s``, at most
  ``max_backoff_s``), until ``give_up_after_s`` from the delivery's creation; then it is dead, and listed.
- No requests to internal addresses: https only, and every address the name resolves to must be public. The same
  check runs on the address each delivery connects to (``worker``), so DNS rebinding does not get past it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from blip_events.settings import WebhooksSection

SIGNATURE_HEADER = "Blip-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class WebhookRefused(ValueError):
    """The URL may not receive webhooks; the message names why."""


def sign(secret: str, body: bytes, at: int) -> str:
    """The ``Blip-Signature`` value for ``body`` sent at unix time ``at``."""
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def verify(secret: str, body: bytes, header: str, now: float, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: the signature matches and its timestamp is within ``tolerance_s`` of ``now``."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if not parts.get("t", "").isdigit() or abs(now - int(parts["t"])) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, int(parts["t"])), f"t={parts['t']},v1={parts.get('v1', '')}")


def retry_delay(attempts: int, webhooks: WebhooksSection, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``, after ``attempts`` failed ones: uniform in (0, ceiling], the
    ceiling doubling from ``first_retry_s`` up to ``max_backoff_s``."""
    ceiling = min(webhooks.first_retry_s * 2 ** max(attempts - 1, 0), webhooks.max_backoff_s)
    return max((rng or random).uniform(0.0, ceiling), 0.05 * ceiling)


@dataclass(frozen=True)
class Target:
    """A webhook URL taken apart: where the worker connects (the host as given, its port) and the path."""

    url: str
    host: str
    port: int
    secure: bool


def address_allowed(address: str, allow_insecure: bool) -> bool:
    """A public address; loopback too where insecure development URLs are allowed. Never private, link-local
    (169.254.169.254, the cloud metadata service, is one), multicast, reserved or unspecified."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return allow_insecure
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_unspecified)


def parse_url(url: str, allow_insecure: bool) -> Target:
    """The URL's parts, or ``WebhookRefused`` naming what is wrong with its form."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise WebhookRefused(f"webhook_url {url!r} is not a URL: {error}") from None
    schemes = ("https", "http") if allow_insecure else ("https",)
    if parts.scheme not in schemes:
        raise WebhookRefused(f"webhook_url must be {' or '.join(schemes)}, got {parts.scheme or 'no scheme'}")
    if not parts.hostname or parts.username or parts.password:
        raise WebhookRefused("webhook_url needs a host and no credentials")
    secure = parts.scheme == "https"
    return Target(url, parts.hostname, port or (443 if secure else 80), secure)


def resolve_allowed(target: Target, allow_insecure: bool) -> list[str]:
    """Every address ``target.host`` resolves to, each checked; ``WebhookRefused`` if any is internal (a name
    with one internal address is refused whole: which one a client picks is not ours to say)."""
    try:
        found = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise WebhookRefused(f"webhook_url's host {target.host} does not resolve: {error}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    refused = [a for a in addresses if not address_allowed(a, allow_insecure)]
    if refused or not addresses:
        raise WebhookRefused(
            f"webhook_url's host {target.host} resolves to {', '.join(refused or addresses) or 'nothing'}: loopback, "
            "private, link-local and metadata addresses never receive webhooks"
            + ("" if allow_insecure else " ([webhooks] allow_insecure allows loopback in development)")
        )
    return addresses


def check_url(url: str, allow_insecure: bool) -> Target:
    """What ``PUT /admin/cameras`` runs on a ``webhook_url``: its form, then every address it resolves to."""
    target = parse_url(url, allow_insecure)
    resolve_allowed(target, allow_insecure)
    return target
