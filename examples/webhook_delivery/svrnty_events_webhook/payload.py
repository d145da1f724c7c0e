"""The JSON body of a webhook request, and the headers that go with it."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import msgspec

from svrnty_events.events import JSON
from svrnty_events.subscriptions import Delivery

#: the event id: receivers deduplicate on it (a retried event keeps its id)
EVENT_ID_HEADER = "Svrnty-Event-Id"
EVENT_TYPE_HEADER = "Svrnty-Event-Type"
#: 1 on the first delivery, then 2, 3, ... on retries
ATTEMPT_HEADER = "Svrnty-Delivery-Attempt"
SUBSCRIPTION_HEADER = "Svrnty-Subscription"


class WebhookEvent(msgspec.Struct, kw_only=True):
    """The body of every request. Receivers may decode it with
    ``msgspec.json.decode(body, type=WebhookEvent)`` (after verifying the signature)."""

    id: str
    type: str
    correlation_id: str
    stream: str
    subscription: str
    sequence: int
    #: 1 on the first delivery of the event to this subscription, 2 on the first retry, ...
    attempt: int
    #: when the event was recorded (RFC 3339, UTC)
    timestamp: datetime
    #: the event's payload: JSON as the application emitted it; base64 of the raw bytes when
    #: ``content_type`` is not application/json
    data: Any
    content_type: str = JSON
    #: the event's headers (metadata set by the application)
    headers: dict[str, str] = {}


_encoder = msgspec.json.Encoder()


def encode_body(delivery: Delivery) -> bytes:
    """The request body for ``delivery``. JSON payloads are embedded as they are stored, without
    a decode/encode round trip."""
    data: Any
    if delivery.content_type == JSON:
        data = msgspec.Raw(delivery.data)
    else:
        data = base64.b64encode(delivery.data).decode("ascii")
    return _encoder.encode(WebhookEvent(
        id=delivery.id, type=delivery.type, correlation_id=delivery.correlation_id,
        stream=delivery.stream, subscription=delivery.subscription, sequence=delivery.sequence,
        attempt=delivery.attempt, timestamp=delivery.timestamp, data=data,
        content_type=delivery.content_type, headers=dict(delivery.headers)))
