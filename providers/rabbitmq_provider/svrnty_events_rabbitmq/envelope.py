"""An event as an AMQP message, and back.

The body is the event's payload as stored (its JSON, unless ``content_type`` says otherwise).
The envelope is in the message properties, so any AMQP client can read it without decoding
the body:

==================  ==========================================================================
``message_id``      the event id (receivers deduplicate on it; a republished event keeps it)
``correlation_id``  the workflow id
``type``            the event type
``timestamp``       when the event was recorded (AMQP: whole seconds)
``content_type``    the payload's content type (``application/json``)
``headers``         the event's headers (``traceparent`` / ``tracestate`` among them when the
                    event carries a trace context), plus ``svrnty-stream``,
                    ``svrnty-sequence`` and ``svrnty-timestamp`` (RFC 3339, microseconds)
==================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import aio_pika
import msgspec

from svrnty_events.events import JSON, RecordedEvent, utcnow
from svrnty_events.subscriptions import Delivery

STREAM_HEADER = "svrnty-stream"
SEQUENCE_HEADER = "svrnty-sequence"
TIMESTAMP_HEADER = "svrnty-timestamp"
#: set on a message the inbound bridge sent to the dead-letter exchange: why
REJECTED_REASON_HEADER = "svrnty-rejected-reason"
#: ... and from which queue
REJECTED_QUEUE_HEADER = "svrnty-rejected-queue"
#: headers of the envelope itself, not of the event: not copied into an appended event
ENVELOPE_HEADERS = frozenset({STREAM_HEADER, SEQUENCE_HEADER, TIMESTAMP_HEADER,
                              REJECTED_REASON_HEADER, REJECTED_QUEUE_HEADER})
#: headers the broker adds (dead-lettering, quorum queues): not the event's
BROKER_HEADER_PREFIXES = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")

APP_ID = "svrnty-events"


class NotAnEnvelope(ValueError):
    """A message that is not an event: the reason says what is missing or wrong."""


def message_of(delivery: Delivery, *, persistent: bool = True) -> aio_pika.Message:
    """The AMQP message for ``delivery``."""
    record = delivery.record
    headers: dict[str, Any] = dict(record.headers) if record.headers else {}
    headers[STREAM_HEADER] = record.stream
    headers[SEQUENCE_HEADER] = record.sequence
    headers[TIMESTAMP_HEADER] = record.timestamp.isoformat()
    return aio_pika.Message(
        record.data, content_type=record.content_type, message_id=record.id,
        correlation_id=record.correlation_id, type=record.type, timestamp=record.timestamp,
        headers=headers, app_id=APP_ID,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT if persistent
        else aio_pika.DeliveryMode.NOT_PERSISTENT)


_json = msgspec.json.Decoder()


def event_of(message: aio_pika.abc.AbstractIncomingMessage, stream: str) -> RecordedEvent:
    """The event ``message`` carries, for appending to ``stream``. Raises NotAnEnvelope."""
    if not message.message_id:
        raise NotAnEnvelope("no message_id (the event id)")
    if not message.type:
        raise NotAnEnvelope("no type (the event type)")
    if not message.correlation_id:
        raise NotAnEnvelope("no correlation_id (the workflow id)")
    content_type = message.content_type or JSON
    if content_type == JSON:
        try:
            _json.decode(message.body)
        except msgspec.DecodeError as exc:
            raise NotAnEnvelope(f"body is not valid JSON: {exc}") from None
    raw = message.headers or {}
    return RecordedEvent(
        id=message.message_id, stream=stream, type=message.type,
        correlation_id=message.correlation_id, timestamp=_timestamp(message, raw),
        data=message.body, content_type=content_type, headers=event_headers(raw))


def event_headers(raw: Mapping[str, Any]) -> dict[str, str]:
    """The event's headers from AMQP headers: envelope and broker headers left out, values as
    text (AMQP headers may be numbers, bytes, lists)."""
    headers: dict[str, str] = {}
    for name, value in raw.items():
        if name in ENVELOPE_HEADERS or name.startswith(BROKER_HEADER_PREFIXES):
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        elif not isinstance(value, str):
            value = str(value)
        headers[name] = value
    return headers


def _timestamp(message: aio_pika.abc.AbstractIncomingMessage,
               raw: Mapping[str, Any]) -> datetime:
    text = raw.get(TIMESTAMP_HEADER)
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if isinstance(text, str):
        try:
            value = datetime.fromisoformat(text)
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    ts = message.timestamp
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return utcnow()
