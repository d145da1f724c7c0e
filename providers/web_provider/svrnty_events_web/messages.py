"""What travels to and from a browser: the event envelope (the same in SSE and WebSocket
messages) and the WebSocket protocol's JSON messages, which mirror the gRPC ``SubscribeRequest``
and ``SubscribeResponse`` of ``protos/svrnty/events/v1/events.proto``."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import msgspec

from svrnty_events import Delivery
from svrnty_events.events import JSON


class Envelope(msgspec.Struct):
    """One delivered event. ``data`` is the payload as JSON when its content type is
    ``application/json``, otherwise a base64 string."""

    id: str
    type: str
    correlation_id: str
    stream: str
    sequence: int
    attempt: int
    timestamp: datetime
    data: Any
    content_type: str
    headers: dict[str, str]
    partition: int
    #: version of the event's class the payload is in (stored events of older versions are
    #: upcast before they are sent)
    version: int = 1


def envelope(delivery: Delivery) -> Envelope:
    record = delivery.record
    data: Any = msgspec.Raw(record.data) if record.content_type == JSON \
        else base64.b64encode(record.data).decode()
    return Envelope(record.id, record.type, record.correlation_id, record.stream,
                    record.sequence, delivery.attempt, record.timestamp, data,
                    record.content_type, record.headers, record.partition, record.version)


# --- client -> server ------------------------------------------------------------------------


class _Message(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Subscribe(_Message):
    consumer_id: str
    #: optional: the subscription is the URL's; when set it must be the same
    subscription: str | None = None
    correlation_id: str | None = None
    event_types: list[str] = []
    terminal_event_types: list[str] = []
    window: int | None = None
    metadata: dict[str, str] = {}
    max_batch_size: int | None = None
    # the start of a new cursor: at most one of these
    from_sequence: int | None = None
    from_time: datetime | None = None
    from_beginning: bool = False
    new_only: bool = False


class Ack(_Message):
    event_ids: list[str]


class Nack(_Message):
    event_id: str
    delay_seconds: float | None = None
    reason: str | None = None


class InProgress(_Message):
    event_ids: list[str]


class Empty(_Message):
    pass


class Request(_Message):
    """One client message: exactly one of its fields is set."""

    subscribe: Subscribe | None = None
    ack: Ack | None = None
    nack: Nack | None = None
    in_progress: InProgress | None = None
    heartbeat: Empty | None = None
    unsubscribe: Empty | None = None


REQUEST_KINDS = ("subscribe", "ack", "nack", "in_progress", "heartbeat", "unsubscribe")

request_decoder = msgspec.json.Decoder(Request)
encoder = msgspec.json.Encoder()


def request_kind(request: Request) -> str:
    """The one field set. Raises ValueError naming the problem."""
    kinds = [k for k in REQUEST_KINDS if getattr(request, k) is not None]
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        raise ValueError(f"request: set exactly one of {', '.join(REQUEST_KINDS)} "
                         f"(found: {found})")
    return kinds[0]
