"""svrnty-events over RabbitMQ: subscriptions published to an exchange with publisher confirms
(outbound), queues consumed into local streams, idempotent by event id (inbound).

Enable it with ``[delivery.rabbitmq]`` (see :mod:`svrnty_events_rabbitmq.options`) or
``streaming.add_delivery("rabbitmq", url=..., outbound=[...], inbound=[...])``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import Inbound, Outbound, RabbitMQOptions

if TYPE_CHECKING:
    from .provider import RabbitMQDeliveryProvider

__all__ = ["Inbound", "Outbound", "RabbitMQDeliveryProvider", "RabbitMQOptions"]


def __getattr__(name: str) -> Any:
    # the provider (and aio-pika) load on first use
    if name == "RabbitMQDeliveryProvider":
        from .provider import RabbitMQDeliveryProvider

        return RabbitMQDeliveryProvider
    raise AttributeError(name)
