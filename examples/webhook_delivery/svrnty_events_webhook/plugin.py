"""The ``webhook`` plugin (entry point ``webhook`` in group ``svrnty_events``).

aiohttp is imported only when the host builds the provider, so listing plugins stays fast.
"""

from __future__ import annotations

from svrnty_events import DeliveryProvider, EventStreamingHost, hookimpl
from svrnty_events.hookspecs import Register

from .options import WebhookOptions


def build_provider(host: EventStreamingHost, options: WebhookOptions) -> DeliveryProvider:
    from .provider import WebhookDeliveryProvider

    return WebhookDeliveryProvider(host, options)


@hookimpl
def register_delivery_providers(register: Register) -> None:
    register("webhook", build_provider, options=WebhookOptions)
