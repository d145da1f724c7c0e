"""The ``grpc`` plugin: the delivery provider, its own hookspecs and the CLI commands.

grpcio is imported only when a hook needs it, so listing plugins stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any

import pluggy

from svrnty_events import hookimpl

from . import hookspecs
from .options import GrpcOptions


@hookimpl
def add_hookspecs(pm: pluggy.PluginManager) -> None:
    pm.add_hookspecs(hookspecs)


@hookimpl
def register_delivery_providers(register: Any) -> None:
    from .server import GrpcDeliveryProvider

    register("grpc", GrpcDeliveryProvider, options=GrpcOptions)


@hookimpl
def register_commands(subparsers: argparse._SubParsersAction) -> None:
    from .cli import register_commands as add

    add(subparsers)
