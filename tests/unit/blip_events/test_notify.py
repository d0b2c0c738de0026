"""blip_events.notify: Stripe-style signatures, backoff with jitter, and no webhooks to internal addresses."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from blip_events.notify import WebhookRefused, address_allowed, check_url, retry_delay, sign, verify
from blip_events.settings import WebhooksSection


def test_the_signature_is_hmac_sha256_of_the_timestamp_and_body() -> None:
    body = b'{"kind":"started"}'
    header = sign("secret", body, 1700000000)
    expected = hmac.new(b"secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify("secret", body, header, now=1700000100)
    assert not verify("secret", body + b" ", header, now=1700000100), "another body"
    assert not verify("other", body, header, now=1700000100), "another secret"
    assert not verify("secret", body, header, now=1700001000), "too old: a replay"


def test_backoff_starts_within_two_seconds_doubles_and_stops_at_five_minutes() -> None:
    hooks = WebhooksSection()
    rng = random.Random(7)
    for attempt, ceiling in ((1, 2.0), (2, 4.0), (3, 8.0), (9, 300.0), (40, 300.0)):
        delays = [retry_delay(attempt, hooks, rng) for _ in range(200)]
        assert max(delays) <= ceiling and min(delays) > 0, attempt
        assert max(delays) > ceiling * 0.8, "jitter spreads over the whole ceiling"


@pytest.mark.parametrize(
    ("address", "insecure", "allowed"),
    [
        ("93.184.216.34", False, True),
        ("2606:2800:220:1:248:1893:25c8:1946", False, True),
        ("127.0.0.1", False, False),
        ("127.0.0.1", True, True),
        ("::1", True, True),
        ("10.0.0.5", True, False),
        ("192.168.1.1", False, False),
        ("172.16.0.1", False, False),
        ("169.254.169.254", True, False),  # the cloud metadata service
        ("fd00:ec2::254", True, False),  # EC2's IPv6 metadata address
        ("::ffff:127.0.0.1", False, False),
        ("0.0.0.0", True, False),
        ("224.0.0.1", False, False),
    ],
)
def test_only_public_addresses_receive_webhooks(address, insecure, allowed) -> None:
    assert address_allowed(address, insecure) is allowed


@pytest.mark.parametrize(
    ("url", "insecure", "message"),
    [
        ("http://93.184.216.34/hook", False, "must be https"),
        ("ftp://example.com/x", True, "must be https or http"),
        ("https://127.0.0.1/hook", False, "loopback, private, link-local and metadata"),
        ("http://10.1.2.3:8080/hook", True, "resolves to 10.1.2.3"),
        ("https://169.254.169.254/latest/meta-data", True, "169.254.169.254"),
        ("https://localhost/hook", False, "loopback"),
        ("https://user:pw@93.184.216.34/", False, "no credentials"),
        ("https:///nohost", False, "needs a host"),
    ],
)
def test_a_refused_url_names_why(url, insecure, message) -> None:
    with pytest.raises(WebhookRefused, match=message):
        check_url(url, insecure)


def test_a_loopback_url_is_allowed_for_development() -> None:
    assert check_url("http://127.0.0.1:9999/hook", allow_insecure=True).port == 9999
