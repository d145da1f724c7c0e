"""gRPC delivery provider and client for svrnty-events.

Names are imported on first use, so loading the plugin (e.g. for ``svrnty-events plugins``)
does not import grpcio.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .options import GrpcOptions

if TYPE_CHECKING:
    from .client import EventClient, Published, RemoteDelivery, RemoteError, RemoteSubscriber
    from .server import GrpcDeliveryProvider

_LAZY = {
    "EventClient": "client", "Published": "client", "RemoteDelivery": "client",
    "RemoteError": "client", "RemoteSubscriber": "client", "GrpcDeliveryProvider": "server",
}

__all__ = ["GrpcOptions", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
