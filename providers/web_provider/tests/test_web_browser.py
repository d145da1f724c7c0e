"""A real browser (headless Chromium over the DevTools protocol): a page's EventSource and
WebSocket receive events from the provider; the WebSocket page acks, so nothing stays held."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from web_testkit import TaskDone, TaskAdded, append, build_streaming, within

from svrnty_events_web import mount
from svrnty_events_web.testing import Chromium

pytestmark = pytest.mark.skipif(
    Chromium.executable() is None,
    reason="no chromium on this machine (apt-get install chromium, or set $CHROMIUM)")

PAGE = """<!doctype html><meta charset="utf-8"><title>tasks</title>
<h1>Tasks</h1><ul id="sse"></ul><ul id="ws"></ul><p id="state">connecting</p>
<script>
const sse = new EventSource("/subscriptions/all/events?from_beginning=true");
for (const type of ["TaskAdded", "TaskDone"]) {
  sse.addEventListener(type, (m) => {
    const e = JSON.parse(m.data);
    const li = document.createElement("li");
    li.textContent = `${m.lastEventId} ${e.type} ${e.data.task_id}`;
    document.getElementById("sse").append(li);
  });
}
const ws = new WebSocket(`ws://${location.host}/subscriptions/tracking/ws`);
ws.onopen = () => ws.send(JSON.stringify(
  {subscribe: {consumer_id: "page", correlation_id: "wf-1", from_beginning: true}}));
ws.onmessage = (m) => {
  const msg = JSON.parse(m.data);
  if (msg.events) {
    for (const e of msg.events) {
      const li = document.createElement("li");
      li.textContent = `${e.type} attempt ${e.attempt}`;
      document.getElementById("ws").append(li);
    }
    ws.send(JSON.stringify({ack: {event_ids: msg.events.map((e) => e.id)}}));
  }
  if (msg.completed) document.getElementById("state").textContent = "completed";
};
ws.onclose = (c) => { document.title = `closed ${c.code} ${c.reason}`; };
</script>"""


async def _no_consumers(host, name: str) -> None:
    while host.consumers(name):
        await asyncio.sleep(0.01)


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def test_a_page_receives_events_over_sse_and_websocket(tmp_path: Path):
    streaming = build_streaming()
    del streaming.config.delivery["web"]
    async with streaming.run() as host:
        app = web.Application()
        app.router.add_get("/", page)
        mount(app, host)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            await append(host, TaskAdded(task_id=1), correlation_id="wf-1")
            async with Chromium.launch() as browser:
                tab = await browser.new_page(f"http://127.0.0.1:{runner.addresses[0][1]}/")
                await tab.wait_for("document.querySelectorAll('#sse li').length >= 1")
                await tab.wait_for("document.querySelectorAll('#ws li').length >= 1")
                await append(host, TaskAdded(task_id=2), correlation_id="wf-2")
                await append(host, TaskDone(task_id=1), correlation_id="wf-1")
                await tab.wait_for("document.querySelectorAll('#sse li').length >= 3")
                await tab.wait_for("document.getElementById('state').textContent == 'completed'")
                sse_items = await tab.evaluate(
                    "[...document.querySelectorAll('#sse li')].map((li) => li.textContent)")
                ws_items = await tab.evaluate(
                    "[...document.querySelectorAll('#ws li')].map((li) => li.textContent)")
                title = await tab.wait_for("document.title.startsWith('closed') && "
                                           "document.title")
                png = await tab.screenshot()
                (tmp_path / "page.png").write_bytes(png)
            assert sse_items == ["0 TaskAdded 1", "1 TaskAdded 2", "2 TaskDone 1"]
            assert ws_items == ["TaskAdded attempt 1", "TaskDone attempt 1"]
            assert title == "closed 1000 completed"
            assert png.startswith(b"\x89PNG") and len(png) > 1000
            # the page acked what it received, so the consumer left holding nothing
            await within(_no_consumers(host, "tracking"))
        finally:
            await runner.cleanup()
