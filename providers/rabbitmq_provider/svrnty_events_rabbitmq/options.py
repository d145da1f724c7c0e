"""Options of the ``rabbitmq`` delivery provider (``[delivery.rabbitmq]`` in TOML).

```toml
[delivery.rabbitmq]
url = "amqp://guest:guest@127.0.0.1:5672/"   # or url_env = "RABBITMQ_URL"
exchange = "svrnty.events"                    # topic exchange, declared durable
prefetch = 64

[[delivery.rabbitmq.outbound]]                # a subscription of this host -> the exchange
subscription = "to-billing"
routing_key = "{stream}.{type}"

[[delivery.rabbitmq.inbound]]                 # a queue -> a cross_service stream of this host
queue = "billing.orders"
stream = "orders"
bindings = ["orders.#"]
```
"""

from __future__ import annotations

import string
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

Positive = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]

#: the fields a routing key template may use
ROUTING_FIELDS = frozenset({"stream", "type", "correlation_id", "partition"})


class Outbound(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A subscription of this host whose events are published to an exchange."""

    #: the subscription consumed (its mode, filters, attempts and dead letters apply)
    subscription: Name
    #: the exchange published to; defaults to the provider's ``exchange``
    exchange: str | None = None
    #: the routing key of each message, a template over ``{stream}``, ``{type}``,
    #: ``{correlation_id}`` and ``{partition}``
    routing_key: str = "{stream}.{type}"
    #: events published and not yet confirmed by the broker, at most (the consumer's window)
    window: Count = 256
    #: the engine consumer id; defaults to ``rabbitmq:EXCHANGE``. Keep it stable: a persistent
    #: store resumes a broadcast subscription where this consumer left off
    consumer_id: str | None = None
    #: publish with ``mandatory``: a message no queue is bound for is returned by the broker
    #: and the event stays in the engine (retried with the subscription's backoff, then
    #: dead-lettered) instead of being dropped by the broker
    mandatory: bool = False

    def __post_init__(self) -> None:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(self.routing_key) if f}
        except ValueError as exc:
            raise ValueError(f"routing_key: not a valid template: {exc}") from None
        unknown = sorted(fields - ROUTING_FIELDS)
        if unknown:
            raise ValueError(f"routing_key: unknown field {{{unknown[0]}}}; use "
                             f"{', '.join('{' + f + '}' for f in sorted(ROUTING_FIELDS))}")
        if self.consumer_id is not None and not self.consumer_id.strip():
            raise ValueError("consumer_id: must not be empty")


class Inbound(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A queue consumed into a local stream (of scope ``cross_service``)."""

    #: the queue consumed
    queue: Name
    #: the local stream its messages are appended to
    stream: Name
    #: routing keys the queue is bound with to ``exchange`` (declared by the provider);
    #: ``[]`` = bind nothing (the queue is fed some other way)
    bindings: list[str] = msgspec.field(default_factory=lambda: ["#"])
    #: the exchange bound from; defaults to the provider's ``exchange``
    exchange: str | None = None
    #: unacknowledged messages the broker sends at once; defaults to the provider's
    #: ``prefetch``. They are appended in batches of up to this many
    prefetch: Count | None = None
    #: declare the queue (durable) with its dead-letter exchange, and that exchange with a
    #: queue keeping what it receives; false = use the queue as it exists
    declare: bool = True
    #: where messages that are not an event envelope go, with the reason in the
    #: ``svrnty-rejected-reason`` header; defaults to ``QUEUE.dead-letter`` (a fanout exchange,
    #: bound to a queue of the same name when ``declare`` is true)
    dead_letter_exchange: str | None = None

    @property
    def dead_letters(self) -> str:
        return self.dead_letter_exchange or f"{self.queue}.dead-letter"


class RabbitMQOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Validated options of the RabbitMQ delivery provider."""

    #: the broker: ``amqp://USER:PASSWORD@HOST:PORT/VHOST`` or ``amqps://...`` (TLS)
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    #: ... or the name of an environment variable holding it (read when the host starts)
    url_env: str | None = None
    #: the exchange outbound subscriptions publish to and inbound queues bind to by default
    exchange: Name = "svrnty.events"
    #: its type when the provider declares it
    exchange_type: Literal["topic", "direct", "fanout", "headers"] = "topic"
    #: declare the default exchange (durable) at start; false = it must exist
    declare_exchange: bool = True
    #: inbound queues' prefetch (unacknowledged messages at once) unless they set their own
    prefetch: Count = 64
    #: seconds to reach the broker at start; past it the host does not start
    connect_timeout: Positive = 15.0
    #: seconds between reconnection attempts after the broker went away
    reconnect_interval: Positive = 1.0
    #: AMQP heartbeat in seconds (finds a dead broker connection)
    heartbeat: Annotated[int, msgspec.Meta(ge=0, le=3600)] = 30
    outbound: list[Outbound] = []
    inbound: list[Inbound] = []

    def __post_init__(self) -> None:
        if self.url_env is not None and not self.url_env.strip():
            raise ValueError("url_env: must name an environment variable")
        check_url("url", self.url)
        seen: dict[tuple[str, str], int] = {}
        for i, route in enumerate(self.outbound):
            key = (route.subscription, self.consumer_id(route))
            if key in seen:
                raise ValueError(f"outbound[{i}]: outbound[{seen[key]}] already publishes "
                                 f"subscription {route.subscription!r} as consumer "
                                 f"{key[1]!r}; give one of them another consumer_id")
            seen[key] = i
        queues: dict[str, int] = {}
        for i, bridge in enumerate(self.inbound):
            if bridge.queue in queues:
                raise ValueError(f"inbound[{i}].queue: inbound[{queues[bridge.queue]}] already "
                                 f"consumes queue {bridge.queue!r}")
            queues[bridge.queue] = i

    def consumer_id(self, route: Outbound) -> str:
        return route.consumer_id or f"rabbitmq:{route.exchange or self.exchange}"


def check_url(field: str, url: str) -> None:
    """Raise ValueError naming ``field`` unless ``url`` is an amqp:// or amqps:// URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ValueError(f"{field}: not a valid URL: {exc}") from None
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError(f"{field}: must be an amqp:// or amqps:// URL with a host, got "
                         f"{redacted_url(url)!r}")


def redacted_url(url: str) -> str:
    """``url`` without its password (for logs, errors and the banner)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unreadable URL>"
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if port is not None:
        netloc = f"{netloc}:{port}"
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}" if parts.password is not None else \
            f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
