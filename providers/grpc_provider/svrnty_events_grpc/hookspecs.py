"""The hookspecs the gRPC delivery provider adds, and nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from svrnty_events.hookspecs import hookspec

if TYPE_CHECKING:
    import grpc.aio

    from svrnty_events.host import EventStreamingHost


@hookspec
def register_grpc_services(server: grpc.aio.Server, host: EventStreamingHost) -> Any:
    """Add gRPC services to the provider's server, so they share its port, TLS and token auth.

    Called once per start of the ``grpc`` delivery provider, before the server starts. Add
    servicers with the generated ``add_XServicer_to_server(servicer, server)``. Return the full
    names of the services added (e.g. ``["svrnty.sample.v1.CommandService"]``) to have them
    listed by server reflection and health checking, or ``None``. Every implementation is
    called.
    """
