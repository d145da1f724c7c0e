"""Webhook delivery for svrnty-events: signed HTTP POSTs with retries, backoff and dead letters.

Receivers verify requests with :func:`verify` (see :mod:`svrnty_events_webhook.signature`).
"""

from .options import WebhookEndpoint, WebhookOptions
from .payload import (
    ATTEMPT_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SUBSCRIPTION_HEADER,
    WebhookEvent,
)
from .signature import SIGNATURE_HEADER, SignatureError, sign, verify

__all__ = [
    "ATTEMPT_HEADER",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "SIGNATURE_HEADER",
    "SUBSCRIPTION_HEADER",
    "SignatureError",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookOptions",
    "sign",
    "verify",
]

__version__ = "0.1.0"
