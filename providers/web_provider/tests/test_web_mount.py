"""Serving from an existing aiohttp application, and how the plugin is found."""

from __future__ import annotations

import pytest
from aiohttp import web
from web_testkit import TaskAdded, append, build_streaming, sse, websocket

from svrnty_events.plugins import collect_registry, get_plugin_manager
from svrnty_events_web import WebOptions, mount


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hi")


@pytest.fixture
async def app_host():
    streaming = build_streaming()
    del streaming.config.delivery["web"]  # no server of its own: only the mounted routes
    async with streaming.run() as host:
        app = web.Application()
        app.router.add_get("/hello", hello)
        gateway = mount(app, host, WebOptions(tokens=["t"]), prefix="/live-api")
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield host, f"http://127.0.0.1:{runner.addresses[0][1]}", gateway
        finally:
            await runner.cleanup()


async def test_mounted_routes_share_the_application_port(app_host, http):
    host, url, gateway = app_host
    assert host.providers == {}
    async with http.get(f"{url}/hello") as r:
        assert await r.text() == "hi"
    async with http.get(f"{url}/live-api/subscriptions/all/events") as r:
        assert r.status == 401  # the mount's options apply
    await append(host, TaskAdded(task_id=1))
    async with sse(http, f"{url}/live-api/subscriptions/all/events?access_token=t") as stream:
        [msg] = await stream.take(1)
    assert msg["event"] == "TaskAdded"
    async with websocket(http, f"{url}/live-api/subscriptions/all/ws?access_token=t") as ws:
        await ws.send(subscribe={"consumer_id": "m", "from_beginning": True})
        await ws.receive()
        [e] = await ws.events(1)
    assert e["type"] == "TaskAdded"


def test_the_entry_point_registers_the_web_provider(monkeypatch):
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "web")
    registry = collect_registry(get_plugin_manager())
    assert "web" in registry.providers
    assert registry.providers["web"].options is WebOptions


async def test_endpoints_name_both_transports(host):
    provider = host.providers["web"]
    assert provider.endpoints() == [
        f"{provider.url}/subscriptions/{{name}}/events  (SSE)",
        f"ws://127.0.0.1:{provider.port}/subscriptions/{{name}}/ws  (WebSocket)"]


def test_bad_options_name_the_field():
    from svrnty_events.errors import ConfigError

    streaming = build_streaming(port=70000)
    with pytest.raises(ConfigError, match=r"delivery\.web\.port"):
        streaming.build_host()
    streaming = build_streaming(tokens=["has space"])
    with pytest.raises(ConfigError, match=r"delivery\.web\.tokens"):
        streaming.build_host()
