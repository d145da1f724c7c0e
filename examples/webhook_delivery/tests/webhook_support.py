"""Test support: a real HTTP receiver on 127.0.0.1 that answers from a script, and hosts."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from svrnty_events import EventStreaming, Event, Workflow
from svrnty_events.events import record
from svrnty_events.testing import eventually as _eventually
from svrnty_events.testing import within

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # Standard Webhooks form: base64 after whsec_
TIMEOUT = 10.0


class WebhookOrderPlaced(Event):
    order_id: int
    total: float


class OrderWorkflow(Workflow):
    pass


def orders(count: int, *, start: int = 0, correlation_id: str = "wf-1") -> list[Any]:
    return [record(WebhookOrderPlaced(order_id=n, total=n * 1.5), stream="orders",
                   correlation_id=correlation_id) for n in range(start, start + count)]


@dataclass
class Reply:
    """A scripted response: ``status`` after ``delay`` seconds, with headers and a body."""

    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    at: float  # time.monotonic()
    headers: dict[str, str]
    body: bytes
    status: int = 0  # the status answered (0 while the handler runs)

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.json["id"]

    @property
    def attempt(self) -> int:
        return self.json["attempt"]


class Receiver:
    """A webhook receiver. Each request gets the next reply of ``script`` (then 200s), or what
    ``plan(request)`` returns when set."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: deque[Reply] = deque()
        self.plan: Callable[[Received], Reply] | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.port: int | None = None
        self.path = "/hooks/svrnty"
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        self._placeholder: socket.socket | None = None

    @property
    def url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}{self.path}"

    def reply(self, *replies: Reply) -> None:
        self.script.extend(replies)

    async def _handle(self, request: web.Request) -> web.Response:
        got = Received(time.monotonic(), dict(request.headers), await request.read())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        async with self._changed:
            self._changed.notify_all()
        try:
            reply = self.plan(got) if self.plan else (
                self.script.popleft() if self.script else Reply())
            if reply.delay:
                await asyncio.sleep(reply.delay)
            got.status = reply.status
            return web.Response(status=reply.status, text=reply.body, headers=reply.headers)
        finally:
            self.in_flight -= 1
            self.received.append(got)
            async with self._changed:
                self._changed.notify_all()

    # --- up and down ---------------------------------------------------------------------------

    def reserve_port(self) -> int:
        """Take a port without listening on it: connections to it are refused (the receiver is
        down) until :meth:`start`."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port or 0))
        self._placeholder = s
        self.port = s.getsockname()[1]
        return self.port

    async def start(self) -> None:
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port or 0, reuse_address=True)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self, *, keep_port: bool = False) -> None:
        """Stop serving. With ``keep_port`` the port stays reserved (connections refused)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if keep_port:
            self.reserve_port()

    async def close(self) -> None:
        await self.stop()
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    # --- waiting -------------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[list[Received]], bool],
                       timeout: float = TIMEOUT) -> list[Received]:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.received))

        await within(wait(), timeout)
        return self.received

    async def wait_count(self, count: int, timeout: float = TIMEOUT) -> list[Received]:
        return await self.wait_for(lambda r: len(r) >= count, timeout)

    def ok_ids(self) -> list[str]:
        return [r.event_id for r in self.received if 200 <= r.status < 300]


def endpoint(url: str, *subscriptions: str, **options: Any) -> dict[str, Any]:
    return {"url": url, "subscriptions": list(subscriptions) or ["billing"], "secret": SECRET,
            **options}


def make_streaming(*endpoints: dict[str, Any], subscriptions: dict[str, dict[str, Any]] | None = None,
                   ) -> EventStreaming:
    """A host config: stream ``orders`` (bound to OrderWorkflow), the given subscriptions
    (default: ``billing``, exclusive, fast exponential backoff) and the webhook endpoints."""
    streaming = EventStreaming()
    streaming.add_stream(OrderWorkflow, name="orders")
    for name, opts in (subscriptions or {"billing": {}}).items():
        streaming.add_subscription(OrderWorkflow, name, **{
            "mode": "exclusive", "redelivery_delay": 0.05, "backoff": "exponential",
            "max_delivery_attempts": 5, **opts})
    streaming.add_delivery("webhook", endpoints=list(endpoints))
    return streaming


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = TIMEOUT) -> Any:
    """:func:`svrnty_events.testing.eventually` with this suite's default timeout."""
    return await _eventually(check, timeout)
