"""svrnty-events: event streaming for CQRS applications, as a pluggy plugin architecture."""

from .commands import CommandResult
from .config import (
    Backoff,
    DeliverySemantics,
    HostConfig,
    RetentionPolicy,
    StreamConfig,
    StreamScope,
    StreamType,
    SubscriptionConfig,
    SubscriptionMode,
)
from .events import Event, RecordedEvent
from .hookspecs import hookimpl
from .host import DeliveryProvider, EventStreaming, EventStreamingHost
from .modes import Mode
from .store import EventStore
from .subscriptions import Consumer, Delivery, Subscriber
from .workflow import Workflow

__all__ = [
    "Backoff",
    "CommandResult",
    "Consumer",
    "Delivery",
    "DeliveryProvider",
    "DeliverySemantics",
    "Event",
    "EventStore",
    "EventStreaming",
    "EventStreamingHost",
    "HostConfig",
    "Mode",
    "RecordedEvent",
    "RetentionPolicy",
    "StreamConfig",
    "StreamScope",
    "StreamType",
    "Subscriber",
    "SubscriptionConfig",
    "SubscriptionMode",
    "Workflow",
    "hookimpl",
]

__version__ = "0.1.0"
