"""Browser delivery for svrnty-events: Server-Sent Events and WebSockets over aiohttp.

Names are imported on first use, so loading the plugin (e.g. for ``svrnty-events plugins``)
does not import aiohttp.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .options import WebOptions

if TYPE_CHECKING:
    from .gateway import WebGateway, mount
    from .provider import WebDeliveryProvider

_LAZY = {"WebGateway": "gateway", "mount": "gateway", "WebDeliveryProvider": "provider"}

__all__ = ["WebOptions", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
