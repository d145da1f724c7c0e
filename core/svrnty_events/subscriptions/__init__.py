"""The subscription engine: the one place delivery semantics live.

The in-process API (``host.subscribe``) and every delivery provider use it through
:class:`Consumer`: ``fetch`` waits (pushed by the store, never polling) for up to a window's worth
of events, ``ack`` / ``nack`` settle them, ``heartbeat`` keeps a remote consumer alive, ``close``
releases what it holds for redelivery at once. Filters, terminal events, redelivery with backoff,
dead-lettering and the backpressure window are all applied here, identically for every provider.

Rooms: ``delivery`` (one hand-over and how code settles it), ``consumer`` (claims, the window,
settling, closing), ``subscriber`` (the in-process async iterator), ``engine`` (subscriptions
and their consumers), ``sync`` (modes that agree across hosts through the store's leases).
"""

from ..events import type_names
from .consumer import ACK_FLUSH_INTERVAL, Consumer
from .delivery import Delivery
from .engine import ConsumerLimitError, SubscriptionEngine, SubscriptionRuntime
from .subscriber import Subscriber

__all__ = ["ACK_FLUSH_INTERVAL", "Consumer", "ConsumerLimitError", "Delivery", "Subscriber",
           "SubscriptionEngine", "SubscriptionRuntime", "type_names"]
