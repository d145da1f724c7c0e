"""The routes, shared by the provider's own server and :func:`mount`: what every connection
goes through before its stream starts (origin, token, subscription, connection limit), and the
connections that are open, so that a stop ends them.

    GET /subscriptions/{name}/events     Server-Sent Events (see sse.py)
    GET /subscriptions/{name}/ws         WebSocket (see websocket.py)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timezone
from typing import Any

from aiohttp import WSCloseCode, web

from svrnty_events import Consumer, EventStreamingHost
from svrnty_events.errors import UnknownSubscriptionError

from .access import Access, accepted_tokens
from .options import WebOptions
from .problems import Problem

log = logging.getLogger("svrnty_events.web")


Start = int | datetime | str | None


class WebGateway:
    """SSE and WebSocket endpoints over a host's subscription engine. Build one with
    :func:`mount`, or let the ``web`` provider build it for its own server."""

    def __init__(self, host: EventStreamingHost, options: WebOptions | None = None) -> None:
        self.host = host
        self.options = options if options is not None else WebOptions()
        self.access = Access(self.options, accepted_tokens(self.options))
        self.stopping = False
        self._connections = 0
        self._consumers: set[Consumer] = set()
        self._sockets: set[web.WebSocketResponse] = set()

    def add_routes(self, app: web.Application, prefix: str = "") -> None:
        from .sse import sse_view
        from .websocket import websocket_view

        base = f"{prefix.rstrip('/')}/subscriptions/{{name}}"
        app.router.add_get(f"{base}/events", self._view(sse_view), allow_head=False)
        app.router.add_get(f"{base}/ws", self._view(websocket_view), allow_head=False)
        app.router.add_route("OPTIONS", f"{base}/events", self.preflight)
        app.router.add_route("OPTIONS", f"{base}/ws", self.preflight)

    def _view(self, handler: Any) -> Any:
        async def view(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(self, request)
            except Problem as problem:
                return problem.response(request.path, self.access.cors_headers(request))
        return view

    async def preflight(self, request: web.Request) -> web.Response:
        if not self.access.origin_allowed(request):
            return Problem(403, "Forbidden", f"Origin: {request.headers.get('Origin')} is not "
                           "allowed").response(request.path)
        headers = self.access.cors_headers(request)
        headers.update({"Access-Control-Allow-Methods": "GET, OPTIONS",
                        "Access-Control-Allow-Headers": "Authorization, Last-Event-ID",
                        "Access-Control-Max-Age": "600"})
        return web.Response(status=204, headers=headers)

    # --- admission -----------------------------------------------------------------------------

    def admit(self, request: web.Request) -> str:
        """Check origin, token and subscription; return the subscription name. Raises Problem
        (403, 401, 404, 503)."""
        self.access.check(request)
        name = request.match_info["name"]
        try:
            self.host.subscription_config(name)
        except UnknownSubscriptionError:
            available = sorted(s.name for s in self.host.config.subscriptions)
            raise Problem(404, "Unknown subscription",
                          f'subscription: unknown subscription "{name}"; available: '
                          f'{", ".join(available) or "none"}', available=available) from None
        if self.stopping:
            raise Problem(503, "Unavailable", "server is stopping; retry",
                          headers={"Retry-After": "1"})
        return name

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[None]:
        """Count an open connection. Raises Problem 503 past ``max_connections``."""
        if self._connections >= self.options.max_connections:
            raise Problem(503, "Too many connections",
                          f"max_connections: this server already has its maximum of "
                          f"{self.options.max_connections} connections; retry later",
                          headers={"Retry-After": "1"})
        self._connections += 1
        try:
            yield
        finally:
            self._connections -= 1

    @property
    def connections(self) -> int:
        """SSE and WebSocket connections open now."""
        return self._connections

    def shares_group(self, subscription: str, correlation_id: str | None) -> bool:
        """True when the consumers of ``subscription`` draw from one delivery group (exclusive,
        consumer_group), so a connection's start position cannot be its own."""
        return correlation_id is None and self.host.shares_group(subscription)

    # --- consumers ---------------------------------------------------------------------------

    async def open_consumer(self, subscription: str, consumer_id: str, **options: Any
                            ) -> Consumer:
        config = self.host.subscription_config(subscription)
        consumer = await self.host.open_consumer(
            subscription, consumer_id, heartbeat_timeout=config.heartbeat_timeout, **options)
        self._consumers.add(consumer)
        return consumer

    async def close_consumer(self, consumer: Consumer, reason: str) -> None:
        """Close (what it holds is redelivered at once; a transient consumer's cursor is
        forgotten by the engine)."""
        self._consumers.discard(consumer)
        await consumer.close(reason)

    def track(self, ws: web.WebSocketResponse) -> None:
        self._sockets.add(ws)

    def untrack(self, ws: web.WebSocketResponse) -> None:
        self._sockets.discard(ws)

    async def close(self) -> None:
        """End every stream: WebSockets close with 1001 (going away), SSE responses end;
        what their consumers hold is redelivered. May be called twice."""
        self.stopping = True
        for ws in list(self._sockets):
            with suppress(Exception):
                await asyncio.wait_for(
                    ws.close(code=WSCloseCode.GOING_AWAY, message=b"server is stopping"), 2.0)
        for consumer in list(self._consumers):
            await consumer.close("server stopping")


def start_position(*, from_sequence: int | None, from_time: datetime | None,
                   from_beginning: bool, new_only: bool, names: tuple[str, str, str, str]
                   ) -> Start:
    """The engine's start position; at most one may be given. Raises ValueError naming it."""
    given = [n for n, v in zip(names, (from_sequence is not None, from_time is not None,
                                       from_beginning, new_only)) if v]
    if len(given) > 1:
        raise ValueError(f"{given[1]}: cannot be combined with {given[0]}; give one start "
                         "position")
    if from_sequence is not None:
        if from_sequence < 0:
            raise ValueError(f"{names[0]}: must be >= 0")
        return from_sequence
    if from_time is not None:
        return from_time if from_time.tzinfo else from_time.replace(tzinfo=timezone.utc)
    if from_beginning:
        return "beginning"
    if new_only:
        return "new"
    return None


def mount(app: web.Application, host: EventStreamingHost, options: WebOptions | None = None,
          *, prefix: str = "") -> WebGateway:
    """Serve ``/subscriptions/{name}/events`` and ``/subscriptions/{name}/ws`` (under
    ``prefix``) from an existing aiohttp application, before it starts. ``options`` default to
    those of the host's ``web`` provider when it has one ([delivery.web]), else
    ``WebOptions()``; ``host`` and ``port`` are not used. Streams end when the application
    shuts down or the host stops."""
    if options is None:
        provider = host.providers.get("web")
        options = getattr(provider, "options", None) or WebOptions()
    gateway = WebGateway(host, options)
    gateway.add_routes(app, prefix)

    async def on_shutdown(app: web.Application) -> None:
        await gateway.close()

    app.on_shutdown.append(on_shutdown)
    return gateway
