"""The ``web`` plugin: the delivery provider. aiohttp is imported only when the host builds the
provider, so listing plugins stays fast."""

from __future__ import annotations

from typing import Any

from svrnty_events import hookimpl

from .options import WebOptions


def _provider(host: Any, options: WebOptions | None) -> Any:
    from .provider import WebDeliveryProvider

    return WebDeliveryProvider(host, options)


@hookimpl
def register_delivery_providers(register: Any) -> None:
    register("web", _provider, options=WebOptions)
