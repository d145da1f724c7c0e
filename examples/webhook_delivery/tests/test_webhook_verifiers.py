"""Requests a real host POSTs to a real receiver, checked with the published verifiers: the
Standard Webhooks library (``standardwebhooks``), Svix's (``svix``) and Stripe's (``stripe``)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import pytest
import standardwebhooks
import stripe
import svix.webhooks
from hypothesis import given, settings
from hypothesis import strategies as st
from webhook_support import SECRET, Receiver, Reply, endpoint, make_streaming, orders

from svrnty_events.errors import ConfigError
from svrnty_events_webhook import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
    SignatureError,
    sign_standard,
    standard_secret,
    verify_standard,
)

OTHER = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # a valid secret that did not sign
STRIPE_TOLERANCE = 300


def verify_with_standardwebhooks(secret: str | bytes, body: bytes,
                                 headers: dict[str, str]) -> None:
    standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False)


def verify_with_svix(secret: str | bytes, body: bytes, headers: dict[str, str]) -> None:
    svix.webhooks.Webhook(secret).verify(body, headers)


def verify_with_stripe(secret: str, body: bytes, headers: dict[str, str]) -> None:
    stripe.WebhookSignature.verify_header(body.decode(), headers.get(SIGNATURE_HEADER), secret,
                                          tolerance=STRIPE_TOLERANCE)


STANDARD_VERIFIERS = [verify_with_standardwebhooks, verify_with_svix]
REJECTIONS = (standardwebhooks.WebhookVerificationError, svix.webhooks.WebhookVerificationError,
              stripe.SignatureVerificationError)


async def received(receiver: Receiver, count: int = 1, **options: Any) -> list[Any]:
    async with make_streaming(endpoint(receiver.url, **options)).run() as host:
        await host.publish("orders", orders(count), external=False)
        return list(await receiver.wait_count(count))


@pytest.mark.parametrize("verifier", [*STANDARD_VERIFIERS, verify_with_stripe],
                         ids=lambda f: f.__name__.removeprefix("verify_with_"))
async def test_default_requests_verify_with_each_library(receiver: Receiver, verifier) -> None:
    got = await received(receiver, 2)
    for request in got:
        verifier(SECRET, request.body, request.headers)
        with pytest.raises(REJECTIONS):
            verifier(OTHER, request.body, request.headers)
        with pytest.raises(REJECTIONS):
            verifier(SECRET, request.body.replace(b'"attempt":1', b'"attempt":2'),
                     request.headers)


async def test_standard_headers_name_the_event_and_share_one_timestamp(
        receiver: Receiver) -> None:
    [request] = await received(receiver)
    headers = request.headers
    assert headers[WEBHOOK_ID_HEADER] == headers[EVENT_ID_HEADER] == request.event_id
    stamp = int(headers[WEBHOOK_TIMESTAMP_HEADER])
    assert headers[SIGNATURE_HEADER].startswith(f"t={stamp},v1=")
    assert headers[WEBHOOK_SIGNATURE_HEADER].startswith("v1,")
    assert verify_standard(SECRET, request.body, headers) == stamp


async def test_a_retry_keeps_the_message_id_and_is_signed_afresh(receiver: Receiver) -> None:
    receiver.reply(Reply(503))
    async with make_streaming(endpoint(receiver.url)).run() as host:
        await host.publish("orders", orders(1), external=False)
        first, second = await receiver.wait_count(2)
    assert first.headers[WEBHOOK_ID_HEADER] == second.headers[WEBHOOK_ID_HEADER]
    assert first.body != second.body  # the attempt number is in the body
    for request in (first, second):
        for verifier in (*STANDARD_VERIFIERS, verify_with_stripe):
            verifier(SECRET, request.body, request.headers)


async def test_standard_alone_sends_no_stripe_header(receiver: Receiver) -> None:
    [request] = await received(receiver, signature=["standard"])
    assert SIGNATURE_HEADER not in request.headers
    for verifier in STANDARD_VERIFIERS:
        verifier(SECRET, request.body, request.headers)
    with pytest.raises(stripe.SignatureVerificationError):
        verify_with_stripe(SECRET, request.body, request.headers)


async def test_stripe_alone_sends_no_standard_headers(receiver: Receiver) -> None:
    # a Stripe secret is used as it is, whatever follows whsec_
    secret = "whsec_not-base64-but-fine-for-stripe"
    [request] = await received(receiver, signature=["stripe"], secret=secret)
    assert not {WEBHOOK_ID_HEADER, WEBHOOK_TIMESTAMP_HEADER, WEBHOOK_SIGNATURE_HEADER} & {
        h.lower() for h in request.headers}
    verify_with_stripe(secret, request.body, request.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError, match="Missing required"):
        verify_with_standardwebhooks(SECRET, request.body, request.headers)


async def test_rotation_verifies_with_the_old_and_the_new_secret(receiver: Receiver) -> None:
    old = "whsec_" + "b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZA=="
    [request] = await received(receiver, secret=SECRET, previous_secrets=[old])
    assert len(request.headers[WEBHOOK_SIGNATURE_HEADER].split(" ")) == 2
    assert request.headers[SIGNATURE_HEADER].count("v1=") == 2
    for secret in (SECRET, old):
        for verifier in (*STANDARD_VERIFIERS, verify_with_stripe):
            verifier(secret, request.body, request.headers)
        assert verify_standard(secret, request.body, request.headers) > 0
    for verifier in (*STANDARD_VERIFIERS, verify_with_stripe):
        with pytest.raises(REJECTIONS):
            verifier(OTHER, request.body, request.headers)


async def test_a_plain_secret_is_used_as_bytes(receiver: Receiver) -> None:
    plain = "plain-shared-secret-0123456789"
    [request] = await received(receiver, secret=plain)
    for verifier in STANDARD_VERIFIERS:
        verifier(standard_secret(plain), request.body, request.headers)
        verifier(plain.encode(), request.body, request.headers)
    verify_with_stripe(plain, request.body, request.headers)
    assert standard_secret(SECRET) == SECRET


def test_a_whsec_secret_that_is_not_base64_is_refused_for_standard_signing() -> None:
    bad = "whsec_not-base64-but-fine-for-stripe"
    with pytest.raises(ConfigError, match=r"secret: not base64 after 'whsec_'"):
        make_streaming(endpoint("http://127.0.0.1:9/hook", secret=bad)).build_host()
    with pytest.raises(ConfigError, match=r"previous_secrets\[0\]: not base64"):
        make_streaming(endpoint("http://127.0.0.1:9/hook", previous_secrets=[bad])).build_host()
    make_streaming(endpoint("http://127.0.0.1:9/hook", secret=bad,
                            signature=["stripe"])).build_host()


@pytest.mark.parametrize(("signature", "message"), [
    ([], "expected array of length >= 1"), (["svix"], "invalid enum value 'svix'"),
    (["stripe", "stripe"], "listed twice")])
def test_bad_signature_option_names_the_field(signature: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_streaming(endpoint("http://127.0.0.1:9/hook", signature=signature)).build_host()
    assert "signature" in f"{err.value.path} {err.value.message}"
    assert message in err.value.message


def test_standard_headers_cannot_be_overridden() -> None:
    for header in (WEBHOOK_ID_HEADER, "Webhook-Signature"):
        with pytest.raises(ConfigError, match="set by the provider"):
            make_streaming(endpoint("http://127.0.0.1:9/hook",
                                    headers={header: "x"})).build_host()


# --- the module's own verifier agrees with the library, both ways -----------------------------


@settings(database=None, max_examples=50, deadline=None)
@given(body=st.text(max_size=200).map(str.encode), msg_id=st.from_regex(r"[a-z0-9-]{1,40}",
                                                                          fullmatch=True))
def test_verify_standard_agrees_with_the_library(body: bytes, msg_id: str) -> None:
    now = int(time.time())
    headers = sign_standard(SECRET, msg_id, body, now)
    verify_with_standardwebhooks(SECRET, body, headers)
    theirs = standardwebhooks.Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(
        now, timezone.utc), body.decode())
    assert verify_standard(SECRET, body, {"webhook-id": msg_id, "webhook-timestamp": str(now),
                                          "webhook-signature": theirs}, now=now) == now
    with pytest.raises(SignatureError, match="no signature matches"):
        verify_standard(OTHER, body, headers, now=now)


@pytest.mark.parametrize(("drop", "message"), [
    (WEBHOOK_ID_HEADER, "missing webhook-id"), (WEBHOOK_SIGNATURE_HEADER, "missing")])
def test_verify_standard_refuses_missing_headers_and_stale_timestamps(drop: str,
                                                                      message: str) -> None:
    headers = sign_standard(SECRET, "msg_1", b"{}", 1_767_225_600)
    assert verify_standard(SECRET, b"{}", headers, now=1_767_225_600 + 299) == 1_767_225_600
    with pytest.raises(SignatureError, match="tolerance"):
        verify_standard(SECRET, b"{}", headers, now=1_767_225_600 + 301)
    with pytest.raises(SignatureError, match=message):
        verify_standard(SECRET, b"{}", {k: v for k, v in headers.items() if k != drop},
                        now=1_767_225_600)
