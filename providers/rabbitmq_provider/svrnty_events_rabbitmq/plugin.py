"""The ``rabbitmq`` plugin: the delivery provider. aio-pika is imported only when the host
builds the provider, so listing plugins stays fast."""

from __future__ import annotations

from typing import Any

from svrnty_events import hookimpl

from .options import RabbitMQOptions


def _provider(host: Any, options: RabbitMQOptions | None) -> Any:
    from .provider import RabbitMQDeliveryProvider

    return RabbitMQDeliveryProvider(host, options)


@hookimpl
def register_delivery_providers(register: Any) -> None:
    register("rabbitmq", _provider, options=RabbitMQOptions)
