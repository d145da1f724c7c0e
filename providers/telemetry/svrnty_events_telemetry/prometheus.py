"""``GET /metrics`` in Prometheus' text format, served on the host's event loop (so gauges read
the engine and the store where they live)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class MetricsServer:
    """An aiohttp server with one route, ``/metrics``. ``before_scrape`` runs first (it
    refreshes the gauges that need a store call)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 before_scrape: Callable[[], Awaitable[None]]) -> None:
        self.registry = registry
        self.host = host
        self.requested_port = port
        self._before_scrape = before_scrape
        self._runner: web.AppRunner | None = None
        #: the bound port (the requested one, or the one picked for port 0)
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # aiohttp keeps the listening asyncio.Server here
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop serving. May be called twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        await self._before_scrape()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
