"""The sample host: configuration from ``svrnty-events.toml``, the domain's handlers, and a plugin
that adds the HTTP API, the background consumer and the gRPC CommandService to the host.

    svrnty-sample [--config FILE] [--host ADDR] [--grpc-port N] [--http-port N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from svrnty_events import EventStreaming, EventStreamingHost, hookimpl
from svrnty_events.cli import serve
from svrnty_events.errors import ConfigError, SvrntyEventsError

from .consumer import AnalyticsConsumer
from .domain import (
    DEFAULT_INVITATION_TTL,
    STREAM_EVENT_TYPES,
    Directory,
    InvitationWorkflow,
    UserWorkflow,
    register_handlers,
)
from .http_api import HttpServer
from .live import add_live_page

log = logging.getLogger("svrnty_sample")

CONFIG_NAME = "svrnty-events.toml"
DEFAULT_HTTP_PORT = 6001
#: the subscriptions the background consumer reads
CONSUMED_SUBSCRIPTIONS = ("user-analytics", "invitation-processor")


def default_config_path() -> Path:
    """The configuration shipped with the package (inside it when installed from a wheel, next
    to it in a source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / CONFIG_NAME, here.parent / CONFIG_NAME):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{CONFIG_NAME} is not installed with svrnty_sample")


class SamplePlugin:
    """The sample's own plugin: it runs the background consumer and the HTTP API with the host,
    and adds the CommandService and QueryService to the gRPC provider's server."""

    def __init__(self, *, http_host: str = "127.0.0.1", http_port: int = DEFAULT_HTTP_PORT,
                 consume: Sequence[str] = CONSUMED_SUBSCRIPTIONS) -> None:
        self.__name__ = "svrnty_sample"  # the plugin's name in the registry and the banner
        self.http_host, self.http_port = http_host, http_port
        self.consume = list(consume)
        self.consumer: AnalyticsConsumer | None = None
        self.http: HttpServer | None = None
        #: filled once the host has started; the banner lists them
        self.endpoints: list[str] = []

    @hookimpl
    async def host_started(self, host: EventStreamingHost) -> None:
        if self.consume:
            self.consumer = AnalyticsConsumer(host, self.consume)
            await self.consumer.start()
        self.http = HttpServer(host, self.http_host, self.http_port)
        add_live_page(self.http.app, host)  # /live and the SSE / WebSocket routes
        await self.http.start()
        url = self.http.url
        self.endpoints[:] = [f"{url}  HTTP API: POST /api/command/{{name}}, "
                             "GET|POST /api/query/{name}",
                             f"{url}/docs  API docs (OpenAPI 3.1 at {url}/openapi.json)",
                             f"{url}/asyncapi.json  streams and subscriptions (AsyncAPI 3.0)",
                             f"{url}/live  live page (events over SSE and WebSocket)"]

    @hookimpl
    async def host_stopping(self, host: EventStreamingHost) -> None:
        try:
            if self.http is not None:
                await self.http.close()
        finally:
            if self.consumer is not None:
                await self.consumer.close()

    @hookimpl(optionalhook=True)
    def register_grpc_services(self, server: Any, host: EventStreamingHost) -> list[str]:
        # a hook of the gRPC provider (svrnty-events-grpc); optional so the sample also loads
        # where only the kernel and the store are installed
        from .grpc_services import add_services

        return add_services(server, host)


def create_streaming(config: str | Path | None = None, *, plugin: SamplePlugin | None = None,
                     grpc_host: str | None = None, grpc_port: int | None = None,
                     directory: Directory | None = None,
                     invitation_ttl: float = DEFAULT_INVITATION_TTL) -> EventStreaming:
    """The sample's EventStreaming: the TOML configuration, the workflows bound to its streams,
    the handlers and the invitation-expiry process manager (an invitation not accepted within
    ``invitation_ttl`` seconds is expired), and the sample plugin. Raises ConfigError for a bad
    file or an ``invitation_ttl`` of zero or below."""
    if not invitation_ttl > 0:
        raise ConfigError("invitation_ttl", f"must be > 0 seconds (got {invitation_ttl})")
    streaming = EventStreaming.from_toml(config or default_config_path(),
                                         plugins=[plugin or SamplePlugin()])
    streaming.bind_workflow(UserWorkflow, "users")
    streaming.bind_workflow(InvitationWorkflow, "invitations")
    for types in STREAM_EVENT_TYPES.values():
        streaming.register_event_types(*types)
    register_handlers(streaming, directory or Directory(), invitation_ttl=invitation_ttl)
    if grpc_host is not None or grpc_port is not None:
        grpc = streaming.config.delivery.setdefault("grpc", {})
        if grpc_host is not None:
            grpc["host"] = grpc_host
        if grpc_port is not None:
            grpc["port"] = grpc_port
    return streaming


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svrnty-sample",
        description="The svrnty-events sample host: users and invitations as workflows, "
                    "commands and queries over HTTP and gRPC, events over gRPC's EventService.")
    parser.add_argument("--config", metavar="FILE", type=Path,
                        help="TOML configuration (default: the one shipped with the sample)")
    parser.add_argument("--host", metavar="ADDR",
                        help="address both servers bind (default: 127.0.0.1, and the gRPC "
                             "provider's host from the configuration)")
    parser.add_argument("--grpc-port", metavar="N", type=int,
                        help="gRPC port (default: [delivery.grpc] port, 6000; 0 = a free port)")
    parser.add_argument("--http-port", metavar="N", type=int, default=DEFAULT_HTTP_PORT,
                        help=f"HTTP port (default: {DEFAULT_HTTP_PORT}; 0 = a free port)")
    parser.add_argument("--invitation-ttl", metavar="SECONDS", type=float,
                        default=DEFAULT_INVITATION_TTL,
                        help="seconds an invitation may wait to be accepted before it is "
                             f"expired (default: {DEFAULT_INVITATION_TTL:g}, a week)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plugin = SamplePlugin(http_host=args.host or "127.0.0.1", http_port=args.http_port)
    try:
        streaming = create_streaming(args.config, plugin=plugin, grpc_host=args.host,
                                     grpc_port=args.grpc_port,
                                     invitation_ttl=args.invitation_ttl)
        logging.basicConfig(stream=sys.stdout, level=streaming.config.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        asyncio.run(serve(streaming, extra_endpoints=plugin.endpoints))
    except SvrntyEventsError as exc:
        print(f"svrnty-sample: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # typically a port in use
        print(f"svrnty-sample: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
