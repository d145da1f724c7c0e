"""Helpers of the web provider's tests: real hosts with the provider on 127.0.0.1 port 0, and
real SSE and WebSocket clients (a module name of its own: test folders of several
distributions run in one pytest session)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import svrnty_events_memory.plugin
import svrnty_events_sqlite.plugin

import svrnty_events_web.plugin
from svrnty_events import Event, EventStreaming, Workflow
from svrnty_events.events import record

#: bound of every wait on the system under test (generous: a busy 2-core machine)
TIMEOUT = 20.0


class TaskAdded(Event):
    task_id: int


class TaskStarted(Event):
    task_id: int


class TaskDone(Event):
    task_id: int


class TaskWorkflow(Workflow):
    pass


async def within(aw: Any, timeout: float = TIMEOUT) -> Any:
    return await asyncio.wait_for(aw, timeout)


def build_streaming(*, store: str = "memory", store_options: dict[str, Any] | None = None,
                    stream_type: str = "persistent", **web_options: Any) -> EventStreaming:
    streaming = EventStreaming(store, store_options, load_entrypoints=False, plugins=[
        svrnty_events_memory.plugin, svrnty_events_sqlite.plugin, svrnty_events_web.plugin])
    streaming.add_stream(TaskWorkflow, name="tasks", type=stream_type)
    fast = {"visibility_timeout": 5.0, "redelivery_delay": 0.05}
    streaming.add_subscription("tasks", "all", mode="broadcast", **fast)
    streaming.add_subscription("tasks", "work", mode="exclusive", **fast)
    streaming.add_subscription("tasks", "tracking", mode="broadcast",
                               terminal_event_types=[TaskDone], **fast)
    streaming.add_delivery("web", **{"port": 0, **web_options})
    return streaming


@asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[Any]:
    async with build_streaming(**kwargs).run() as host:
        yield host


def base_url(host: Any) -> str:
    return host.providers["web"].url


async def append(host: Any, *events: Any, correlation_id: str = "wf-1") -> list[Any]:
    return await host.publish("tasks", [record(e, stream="tasks", correlation_id=correlation_id)
                                         for e in events], external=False)


class SseMessage(dict[str, str]):
    @property
    def json(self) -> Any:
        return json.loads(self["data"])


class SseReader:
    """Reads an SSE response: messages (id/event/data) and comment lines."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []
        self.retry: int | None = None

    async def next(self, timeout: float = TIMEOUT) -> SseMessage | None:
        """The next message, or None at the end of the stream."""
        return await within(self._next(), timeout)

    async def _next(self) -> SseMessage | None:
        message = SseMessage()
        while True:
            raw = await self.response.content.readline()
            if not raw:
                return None
            line = raw.decode().rstrip("\r\n")
            if not line:
                if message:
                    return message
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "retry":
                self.retry = int(value)
            elif field == "data" and "data" in message:
                message["data"] += "\n" + value
            else:
                message[field] = value

    async def take(self, count: int) -> list[SseMessage]:
        out = []
        while len(out) < count:
            msg = await self.next()
            assert msg is not None, f"stream ended after {len(out)} of {count} messages"
            out.append(msg)
        return out


@asynccontextmanager
async def sse(http: aiohttp.ClientSession, url: str, **kwargs: Any
              ) -> AsyncIterator[SseReader]:
    async with http.get(url, **kwargs) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        try:
            yield SseReader(response)
        finally:
            response.close()  # drop the connection, as a closed tab does


class WsClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(json.dumps(message))

    async def receive(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        msg = await within(self.ws.receive(), timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        return json.loads(msg.data)

    async def events(self, count: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < count:
            message = await self.receive()
            assert "events" in message, message
            out.extend(message["events"])
        return out

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str]:
        """Read until the server closes; its close code and reason."""
        while True:
            msg = await within(self.ws.receive(), timeout)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING):
                return self.ws.close_code, msg.extra or ""


@asynccontextmanager
async def websocket(http: aiohttp.ClientSession, url: str, **kwargs: Any
                    ) -> AsyncIterator[WsClient]:
    async with http.ws_connect(url, **kwargs) as ws:
        yield WsClient(ws)
