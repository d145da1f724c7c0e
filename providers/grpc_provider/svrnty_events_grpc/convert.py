"""Conversions between the kernel's types and the protobuf messages, shared by the server and
the client so both sides agree on one mapping."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from svrnty_events.events import RecordedEvent
from svrnty_events.store import DeadLetter
from svrnty_events.upcasting import VERSION_HEADER

from .proto import events_pb2 as pb

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_timestamp(dt: datetime) -> Timestamp:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return Timestamp(seconds=seconds, nanos=delta.microseconds * 1000)


def from_timestamp(ts: Timestamp) -> datetime:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=timezone.utc)


def delivered_event(record: RecordedEvent, attempt: int) -> pb.DeliveredEvent:
    return pb.DeliveredEvent(
        id=record.id, type=record.type, correlation_id=record.correlation_id,
        stream=record.stream, sequence=record.sequence, timestamp=to_timestamp(record.timestamp),
        attempt=attempt, headers=record.headers, data=record.data,
        content_type=record.content_type, partition=record.partition, version=record.version)


def recorded_event(msg: pb.DeliveredEvent) -> RecordedEvent:
    headers = dict(msg.headers)
    if msg.version > 1:
        headers[VERSION_HEADER] = str(msg.version)
    return RecordedEvent(
        id=msg.id, stream=msg.stream, type=msg.type, correlation_id=msg.correlation_id,
        timestamp=from_timestamp(msg.timestamp), data=msg.data, sequence=msg.sequence,
        content_type=msg.content_type, headers=headers, partition=msg.partition)


def dead_letter_to_proto(dl: DeadLetter) -> pb.DeadLetter:
    return pb.DeadLetter(
        event=delivered_event(dl.event, dl.attempts), subscription=dl.subscription,
        consumer_id=dl.consumer_id, reason=dl.reason, attempts=dl.attempts,
        dead_lettered_at=to_timestamp(dl.dead_lettered_at), error=dl.error or "",
        group=dl.group)


def dead_letter_from_proto(msg: pb.DeadLetter) -> DeadLetter:
    return DeadLetter(
        event=recorded_event(msg.event), subscription=msg.subscription, group=msg.group,
        consumer_id=msg.consumer_id, reason=msg.reason, attempts=msg.attempts,
        dead_lettered_at=from_timestamp(msg.dead_lettered_at), error=msg.error or None)


def consumer_info_from_proto(msg: pb.ConsumerInfo) -> dict[str, Any]:
    """The same keys as ``host.consumers(subscription)``."""
    return {"consumer_id": msg.consumer_id, "subscription": msg.subscription,
            "in_flight": msg.in_flight, "delivered": msg.delivered,
            "correlation_id": msg.correlation_id or None,
            "connected_at": msg.connected_at.seconds + msg.connected_at.nanos / 1e9,
            "metadata": dict(msg.metadata), "group": msg.group}
