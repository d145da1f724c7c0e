"""Webhook delivery for svrnty-events: signed HTTP POSTs with retries, backoff and dead letters.

Receivers verify requests with a Standard Webhooks library (``standardwebhooks``, ``svix``), with
Stripe's, or with :func:`verify_standard` / :func:`verify` (see
:mod:`svrnty_events_webhook.signature`).
"""

from .options import WebhookEndpoint, WebhookOptions
from .payload import (
    ATTEMPT_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SUBSCRIPTION_HEADER,
    WebhookEvent,
)
from .signature import (
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
    SignatureError,
    sign,
    sign_standard,
    standard_secret,
    verify,
    verify_standard,
)

__all__ = [
    "ATTEMPT_HEADER",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "SIGNATURE_HEADER",
    "SUBSCRIPTION_HEADER",
    "WEBHOOK_ID_HEADER",
    "WEBHOOK_SIGNATURE_HEADER",
    "WEBHOOK_TIMESTAMP_HEADER",
    "SignatureError",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookOptions",
    "sign",
    "sign_standard",
    "standard_secret",
    "verify",
    "verify_standard",
]

__version__ = "0.1.0"
