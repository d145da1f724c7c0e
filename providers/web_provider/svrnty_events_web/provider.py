"""The ``web`` delivery provider: the gateway's routes on an aiohttp server of its own."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from svrnty_events import EventStreamingHost
from svrnty_events.errors import ConfigError

from .gateway import WebGateway
from .options import WebOptions
from .problems import Problem

log = logging.getLogger("svrnty_events.web")


@web.middleware
async def _problems(request: web.Request, handler: Any) -> web.StreamResponse:
    # the server's own 404 / 405 as problem details too
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return Problem(exc.status, exc.reason, exc.text or exc.reason,
                       headers={k: v for k, v in exc.headers.items() if k == "Allow"}
                       ).response(request.path)


class WebDeliveryProvider:
    """The ``web`` delivery provider: SSE and WebSocket endpoints on ``host:port``. Built by the
    host as ``WebDeliveryProvider(host, options)``; ``port`` is the bound port once started,
    ``gateway`` serves the routes."""

    def __init__(self, host: EventStreamingHost, options: WebOptions | None = None) -> None:
        self.host = host
        self.options = options if options is not None else WebOptions()
        self.gateway: WebGateway | None = None
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and serve. Raises ConfigError for unusable token settings or address."""
        self.gateway = WebGateway(self.host, self.options)
        app = web.Application(middlewares=[_problems])
        self.gateway.add_routes(app)
        # a browser that goes away cancels its handler, so its consumer is released at once
        runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True,
                               shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.options.host, self.options.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError("delivery.web.port", f"cannot bind {self.options.host}:"
                              f"{self.options.port}: {exc.strerror or exc}") from None
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("web delivery listening on %s", ", ".join(self.endpoints()))

    async def stop(self, grace: float) -> None:
        """End every stream (WebSockets close with 1001, their events are redelivered), then
        stop the server. May be called twice."""
        runner, self._runner = self._runner, None
        if self.gateway is not None:
            await self.gateway.close()
        if runner is not None:
            await runner.cleanup()

    @property
    def url(self) -> str:
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        return f"http://{host}:{self.port}"

    def endpoints(self) -> list[str]:
        """``http://HOST:PORT/subscriptions/{name}/events`` (SSE) and ``.../ws`` once started."""
        if self.port is None:
            return []
        return [f"{self.url}/subscriptions/{{name}}/events  (SSE)",
                f"{self.url.replace('http', 'ws', 1)}/subscriptions/{{name}}/ws  (WebSocket)"]
