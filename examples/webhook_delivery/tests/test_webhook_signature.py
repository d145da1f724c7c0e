"""Signing and verifying, and the mapping of HTTP outcomes (pure functions)."""

from __future__ import annotations

import hashlib
import hmac
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svrnty_events import Backoff, SubscriptionConfig
from svrnty_events_webhook import SignatureError, sign, verify
from svrnty_events_webhook.provider import classify, parse_retry_after, retry_delay
from svrnty_events_webhook.signature import parse_header

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # Standard Webhooks form: base64 after whsec_
NOW = 1_767_225_600


def test_header_is_stripe_style_and_independently_computable() -> None:
    body = b'{"id":"e1"}'
    header = sign(SECRET, body, timestamp=NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    assert verify(SECRET, body, header, now=NOW) == NOW


@settings(database=None)
@given(body=st.binary(max_size=256), tamper=st.binary(min_size=1, max_size=8))
def test_a_changed_body_never_verifies(body: bytes, tamper: bytes) -> None:
    header = sign(SECRET, body, timestamp=NOW)
    assert verify(SECRET, body, header, now=NOW) == NOW
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(SECRET, body + tamper, header, now=NOW)


def test_stale_and_future_timestamps_are_rejected() -> None:
    header = sign(SECRET, b"{}", timestamp=NOW)
    assert verify(SECRET, b"{}", header, now=NOW + 299) == NOW
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, b"{}", header, now=NOW + 301)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, b"{}", header, now=NOW - 301)
    assert verify(SECRET, b"{}", header, now=NOW + 3000, tolerance=3600) == NOW


def test_a_re_signed_timestamp_does_not_verify() -> None:
    header = sign(SECRET, b"{}", timestamp=NOW)
    forged = header.replace(f"t={NOW}", f"t={NOW + 100}")
    with pytest.raises(SignatureError):
        verify(SECRET, b"{}", forged, now=NOW + 100)


def test_rotation_signs_with_every_secret_and_verify_accepts_any() -> None:
    old, new = "old-secret-0123456789", "new-secret-0123456789"
    header = sign([new, old], b"{}", timestamp=NOW)
    assert header.count("v1=") == 2
    assert verify(old, b"{}", header, now=NOW) == NOW
    assert verify(new, b"{}", header, now=NOW) == NOW
    assert verify(["third-secret-012345678", old], b"{}", header, now=NOW) == NOW
    with pytest.raises(SignatureError):
        verify("third-secret-012345678", b"{}", header, now=NOW)


@pytest.mark.parametrize(("header", "message"), [
    (None, "missing"), ("", "missing"), ("v1=abc", "no timestamp"), (f"t={NOW}", "no v1"),
    ("t=soon,v1=abc", "malformed timestamp"), ("garbage", "malformed")])
def test_malformed_headers_are_rejected(header: str | None, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        verify(SECRET, b"{}", header, now=NOW)


def test_unknown_schemes_are_ignored() -> None:
    header = sign(SECRET, b"{}", timestamp=NOW) + ",v2=future"
    assert parse_header(header)[0] == NOW
    assert verify(SECRET, b"{}", header, now=NOW) == NOW


@pytest.mark.parametrize(("status", "action"), [
    (200, "ack"), (201, "ack"), (204, "ack"), (299, "ack"),
    (408, "retry"), (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"),
    (400, "dead_letter"), (401, "dead_letter"), (403, "dead_letter"), (404, "dead_letter"),
    (410, "dead_letter"), (413, "dead_letter"), (422, "dead_letter"),
    (301, "retry"), (302, "retry"), (307, "retry"), (101, "retry")])
def test_status_classification(status: int, action: str) -> None:
    outcome = classify(status, excerpt="why")
    assert outcome.action == action
    if action != "ack":
        assert outcome.reason.startswith(f"HTTP {status}") and outcome.error == "why"


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 3 ") == 3.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("inf") is None
    when = datetime.fromtimestamp(NOW, timezone.utc) + timedelta(seconds=90)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=NOW) == 90.0
    past = datetime.fromtimestamp(NOW, timezone.utc) - timedelta(seconds=90)
    assert parse_retry_after(format_datetime(past, usegmt=True), now=NOW) == 0.0
    assert classify(503, retry_after="7").retry_after == 7.0


def test_retry_delay_never_undercuts_the_backoff() -> None:
    sub = SubscriptionConfig(name="s", stream="x", redelivery_delay=1.0, backoff=Backoff.EXPONENTIAL)
    assert retry_delay(sub, 3, None, 3600) == 4.0  # the backoff alone
    assert retry_delay(sub, 3, 60.0, 3600) == 60.0
    assert retry_delay(sub, 3, 0.0, 3600) == 4.0  # 1 * 2 ** (3 - 1)
    assert retry_delay(sub, 1, 86400.0, 600) == 600.0


def test_backoff_is_exponential_even_for_a_fixed_backoff_subscription() -> None:
    fixed = SubscriptionConfig(name="s", stream="x", redelivery_delay=0.5,
                               max_redelivery_delay=3.0)
    assert [retry_delay(fixed, n, None, 3600) for n in (1, 2, 3, 4, 5)] == [
        0.5, 1.0, 2.0, 3.0, 3.0]
